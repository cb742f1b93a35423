"""The ACDC datalist for semi-supervision: n fully annotated training patients, the others unlabelled.

Kervadec et al., "Curriculum semi-supervised segmentation", MICCAI 2019 train on n = 5, 10 or 20
labelled ACDC patients plus the remaining training patients without labels. This module builds that
datalist from the raw ACDC folder: the usual seeded patient-level split
(:func:`wss_monai.data.acdc.make_acdc_datalist`, so the validation patients are those of every
other recipe), then :func:`wss_monai.data.hybrid.make_hybrid_datalist` marks the cases of n seeded
training patients ``"full"`` and the others ``"weak"`` (nested sets for growing n with one seed).

``subset="full"`` keeps only the n labelled patients in ``"training"`` (the full-supervision
baseline and the size regressor); ``full_repeats`` repeats each labelled case in ``"training"``
(``"balance"``: as many times as needed for about half of the training cases to be labelled), so
that a few labelled patients are not drowned among many unlabelled ones in each batch.

Example:
    >>> from wss_monai.data.phantoms import make_cardiac_phantoms
    >>> import tempfile
    >>> root = make_cardiac_phantoms(tempfile.mkdtemp(), num_patients=5, seed=0, shape=(32, 32), num_slices=(3, 3))
    >>> d = make_hybrid_acdc_datalist(root, num_full_patients=1, num_validation=1, full_repeats="balance")
    >>> len(d["full_patients"]), d["full_repeats"], sum(c["supervision"] == "full" for c in d["training"])
    (1, 3, 6)
"""

from __future__ import annotations

import logging
import numbers
from pathlib import Path

from wss_monai.data.acdc import make_acdc_datalist, write_datalist
from wss_monai.data.hybrid import make_hybrid_datalist

__all__ = ["make_hybrid_acdc_datalist", "repeat_full_cases"]

logger = logging.getLogger(__name__)

_SUBSETS = ("all", "full")


def repeat_full_cases(cases: list[dict], full_repeats: int | str, key: str = "supervision") -> tuple[list[dict], int]:
    """Each case marked ``"full"`` repeated ``full_repeats`` times (``"balance"``: ``round(#weak / #full)``, ≥ 1).

    Returns the new list (labelled copies placed after their original, order otherwise kept) and
    the factor used.
    """
    num_full = sum(case.get(key) == "full" for case in cases)
    if full_repeats == "balance":
        repeats = max(1, round((len(cases) - num_full) / num_full)) if num_full else 1
    elif isinstance(full_repeats, numbers.Integral) and not isinstance(full_repeats, bool) and full_repeats >= 1:
        repeats = int(full_repeats)
    else:
        raise ValueError(f"full_repeats must be an integer >= 1 or 'balance', got {full_repeats!r}")
    out = []
    for case in cases:
        out.extend(dict(case) for _ in range(repeats if case.get(key) == "full" else 1))
    return out, repeats


def make_hybrid_acdc_datalist(
    dataset_dir: str | Path,
    output_json: str | Path | None = None,
    num_full_patients: int = 5,
    num_validation: int | float = 0.25,
    seed: int = 0,
    hybrid_seed: int | None = None,
    subset: str = "all",
    full_repeats: int | str = 1,
    **acdc_kwargs,
) -> dict:
    """ACDC datalist with ``num_full_patients`` training patients marked ``"full"``, the others ``"weak"``.

    Args:
        dataset_dir: ACDC folder holding ``training/``.
        output_json: where to write the datalist (with ``full_patients``); nothing written when ``None``.
        num_full_patients: n, the labelled training patients, in ``[0, number of training patients]``.
        num_validation: validation patients (count or fraction), as :func:`make_acdc_datalist`.
        seed: seed of the patient split.
        hybrid_seed: seed of the choice of the n patients (default: ``seed``).
        subset: ``"all"`` (labelled and unlabelled training cases) or ``"full"`` (the labelled ones only).
        full_repeats: repetitions of each labelled training case, an integer ≥ 1 or ``"balance"``
            (see :func:`repeat_full_cases`); applied with ``subset="all"`` only.
        acdc_kwargs: other arguments of :func:`make_acdc_datalist` (``with_scribbles``, ``num_classes``, ...).

    Returns:
        The datalist: ``"training"`` cases carry ``"supervision"``; plus ``"full_patients"``,
        ``"num_full_patients"``, ``"hybrid_seed"``, ``"subset"`` and ``"full_repeats"``.

    Raises:
        ValueError: ``num_full_patients`` larger than the number of training patients (or negative),
            an unknown ``subset``, or a bad ``full_repeats``.
    """
    if subset not in _SUBSETS:
        raise ValueError(f"subset must be one of {_SUBSETS}, got {subset!r}")
    datalist = make_acdc_datalist(dataset_dir, None, num_validation=num_validation, seed=seed, **acdc_kwargs)
    hybrid_seed = seed if hybrid_seed is None else hybrid_seed
    datalist = make_hybrid_datalist(datalist, num_full_patients, seed=hybrid_seed)
    repeats = 1
    if subset == "full":
        datalist["training"] = [case for case in datalist["training"] if case["supervision"] == "full"]
        if not datalist["training"]:
            raise ValueError("subset='full' needs num_full_patients >= 1, got 0")
    else:
        datalist["training"], repeats = repeat_full_cases(datalist["training"], full_repeats)
    datalist.update(subset=subset, full_repeats=repeats)
    logger.info(
        "hybrid ACDC datalist: %d full patients %s, subset %r, labelled cases x%d, %d training cases",
        len(datalist["full_patients"]),
        datalist["full_patients"],
        subset,
        repeats,
        len(datalist["training"]),
    )
    if output_json is not None:
        write_datalist(datalist, output_json)
    return datalist
