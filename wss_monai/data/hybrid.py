"""Hybrid supervision: a few fully annotated patients, weak labels for the others, in one batch.

Semi- and mixed-supervision settings (e.g. Kervadec et al., "Curriculum semi-supervised
segmentation", MICCAI 2019: n = 5, 10 or 20 labelled ACDC patients, size bounds on the others)
train on one datalist where each case says how it is supervised. :func:`make_hybrid_datalist`
marks the cases of ``n`` seeded training patients ``"supervision": "full"`` and the others
``"weak"``; :class:`SupervisionSwitchLoss` then applies the full loss to the images marked full and
the weak loss to the others, per image within one batch.

Example:
    >>> datalist = {"training": [{"patient": p, "frame": f} for p in "abc" for f in (1, 2)], "validation": []}
    >>> hybrid = make_hybrid_datalist(datalist, num_full_patients=1, seed=0)
    >>> sorted({c["supervision"] for c in hybrid["training"]}), len(hybrid["full_patients"])
    (['full', 'weak'], 1)
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["SUPERVISION_VALUES", "make_hybrid_datalist"]

logger = logging.getLogger(__name__)

SUPERVISION_VALUES = ("full", "weak")


def make_hybrid_datalist(
    datalist: Mapping,
    num_full_patients: int,
    seed: int = 0,
    split: str = "training",
    patient_key: str = "patient",
    key: str = "supervision",
) -> dict:
    """Marks the cases of ``num_full_patients`` seeded patients of ``split`` as fully annotated.

    Patients (the distinct ``case[patient_key]``, sorted) are ordered by
    ``numpy.random.default_rng(seed).permutation``; the first ``num_full_patients`` are full. With
    one seed the full sets are nested: the 5 patients of ``n = 5`` are among the 10 of ``n = 10``,
    as in a curriculum of growing annotation budgets. Every frame / slice of a patient gets the same
    mark. Other splits are copied unchanged.

    Args:
        datalist: ``{"training": [case, ...], ...}`` (e.g. from
            :func:`wss_monai.data.acdc.make_acdc_datalist`); not modified.
        num_full_patients: number of fully annotated patients, in ``[0, number of patients]``.
        seed: seed of the choice.
        split: the split to mark.
        patient_key: case key of the patient identifier.
        key: case key of the mark (``"full"`` or ``"weak"``).

    Returns:
        A new datalist (cases copied) with ``case[key]`` set in ``split``, plus ``"full_patients"``
        (sorted), ``"num_full_patients"`` and ``"hybrid_seed"``.

    Raises:
        ValueError: ``split`` missing or empty, a case without ``patient_key``, or
            ``num_full_patients`` out of range.
    """
    if not isinstance(datalist, Mapping):
        raise ValueError(f"datalist must be a dict of splits, got {type(datalist).__name__}")
    if split not in datalist:
        raise ValueError(f"split {split!r} is not in the datalist; splits present: {sorted(datalist)}")
    cases = datalist[split]
    if isinstance(cases, (str, bytes)) or not isinstance(cases, Sequence) or len(cases) == 0:
        raise ValueError(f"datalist[{split!r}] must be a non-empty list of cases, got {cases!r:.80}")
    missing = [i for i, case in enumerate(cases) if not isinstance(case, Mapping) or patient_key not in case]
    if missing:
        raise ValueError(f"cases at positions {missing[:10]} of {split!r} have no {patient_key!r} key")
    patients = sorted({str(case[patient_key]) for case in cases})
    if (
        isinstance(num_full_patients, bool)
        or not isinstance(num_full_patients, numbers.Integral)
        or not 0 <= num_full_patients <= len(patients)
    ):
        raise ValueError(
            f"num_full_patients must be an integer in [0, {len(patients)}] (the patients of {split!r}), "
            f"got {num_full_patients!r}"
        )
    order = np.random.default_rng(seed).permutation(len(patients))
    full = sorted(patients[i] for i in order[: int(num_full_patients)])
    full_set = set(full)
    out = {name: [dict(c) for c in value] if name == split else value for name, value in datalist.items()}
    for case in out[split]:
        case[key] = "full" if str(case[patient_key]) in full_set else "weak"
    out.update(full_patients=full, num_full_patients=int(num_full_patients), hybrid_seed=int(seed))
    logger.info(
        "hybrid supervision (seed %s): %d of %d %s patients full (%d cases), %d weak",
        seed,
        len(full),
        len(patients),
        split,
        sum(case[key] == "full" for case in out[split]),
        len(patients) - len(full),
    )
    return out
