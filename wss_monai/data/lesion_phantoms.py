"""Synthetic small-lesion phantoms written in the raw ISLES 2018 and WMH 2017 layouts.

Both phantoms have many small, irregular lesions covering well under 1 % of the voxels, which
is what makes lesion segmentation hard for size priors and image-level tags.

**Lesions.** A lesion is a union of one to three random ellipsoids (random in-plane rotation,
semi-axes in voxels) whose normalised radius :math:`r` is perturbed by a smooth noise field
:math:`n` (unit variance, clipped to :math:`[-1, 1]`): the lesion is :math:`r + 0.3\\,n < 1`,
restricted to the allowed tissue, its centre voxel always included. Centres are drawn from a
probability map (periventricular white matter for WMH, one hemisphere for ISLES); a candidate
that would touch (26-neighbourhood) an earlier lesion, or push the foreground past its cap, is
rejected, so every lesion is its own connected component. Lesions are added until a per-case
target foreground fraction is reached (and a minimum count).

**ISLES** (:func:`make_isles_phantoms`): patients of one or two slabs (consecutive cases, like the
real data; ``phantom_patients.json`` in ``output_dir`` gives the case -> patient map), each slab
``(X, Y, Z)`` with ``Z`` in ``num_slices``, and five maps with tissue values of CT perfusion:
CT (HU: air -1000, bone ~1000, grey matter ~36, white matter ~28, CSF ~8), CBF (ml/100 g/min),
CBV (ml/100 g), MTT (s) and Tmax (s). In the infarct core (``OT`` = 1): CBF x 0.2-0.4, CBV x
0.35-0.6, MTT x 1.8-2.6, Tmax 9-14 s, CT 4-7 HU lower (weak); around it an unlabelled
penumbra-like halo with CBF x 0.55-0.75 and Tmax 6-8.5 s, so thresholding Tmax > 6 s
over-segments. Case-level variety: hemisphere, and a territorial (clustered) or scattered
pattern; target foreground 0.15-0.6 % (cap 0.9 %), at least 3 lesions.

**WMH** (:func:`make_wmh_phantoms`): a brain-like ellipsoid (scalp, skull, CSF, cortex with sulci,
deep grey matter, white matter, lateral ventricles whose size grows with the lesion load); FLAIR
with bright lesions, a thin bright ependymal rim (unlabelled) and dark CSF; T1 with dark lesions.
``wmh.nii.gz`` holds 1 for WMH (periventricular caps and deep punctate lesions, at least 6) and 2
for 1-3 other-pathology blobs (infarct-like: dark on both images), never touching a label-1
lesion. Case-level variety: the site (intensity scale, noise, bias strength, lesion contrast per
site) and a lesion load (low 0.1-0.25 %, moderate 0.25-0.45 %, high 0.45-0.75 % of the voxels,
label 1 capped at 0.8 %, label 2 at 0.15 %).

**Mimics** (``mimics=(min, max)`` per slab or subject, off by default): unlabelled look-alikes placed
at least 6 (ISLES) or 5 (WMH) voxels in-plane from every label, i.e. sources of *far-away* false
positives, which is what the boundary loss is meant to suppress. ISLES: old infarcts, hypodense
(10-20 HU lower) with CBF x 0.25-0.45 and CBV x 0.3-0.5 like the core, but no perfusion delay (MTT x
0.95-1.15, Tmax unchanged), in either hemisphere. WMH: FLAIR-bright spots in the cortex and deep grey
matter, as bright as the subject's lesions, normal on T1. They come from their own generator
(``default_rng([seed, k, 2, slab])``), so labels and images elsewhere are identical with or without.

Both: a smooth multiplicative bias field, partial-volume blur and Gaussian noise. Patient
(subject) ``k`` is drawn from ``numpy.random.default_rng([seed, k])`` (ISLES: patient ``k``
gives one or two consecutive cases), so the same seed gives identical arrays whatever
``num_cases``; WMH site parameters come from ``default_rng([seed, 1, crc32(site)])``.

Example:
    >>> import tempfile
    >>> root = make_wmh_phantoms(tempfile.mkdtemp(), num_subjects=2, seed=0)
    >>> sorted(str(p.relative_to(root)) for p in root.rglob("*.nii.gz"))
    ['Singapore/1/pre/FLAIR.nii.gz', 'Singapore/1/pre/T1.nii.gz', 'Singapore/1/wmh.nii.gz', \
'Utrecht/0/pre/FLAIR.nii.gz', 'Utrecht/0/pre/T1.nii.gz', 'Utrecht/0/wmh.nii.gz']

Command line::

    python -m wss_monai.data.lesion_phantoms --kind wmh --output_dir /tmp/wmh_phantoms --num_cases 20 --mimics 4 10
"""

from __future__ import annotations

import argparse
import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from scipy import ndimage

from wss_monai.data.phantoms import _bias_field, _save

__all__ = ["make_isles_phantoms", "make_wmh_phantoms", "main"]

logger = logging.getLogger(__name__)

ISLES_MAPS = ("CT", "CT_CBF", "CT_CBV", "CT_MTT", "CT_Tmax")
AIR, BONE, CSF, GM, WM, DEEP_GM, SCALP = range(7)
NOISE_AMPLITUDE = 0.3
"""Weight of the smooth noise added to the normalised radius of a lesion (irregular borders)."""
_ISLES_LEVELS = 32
"""Number of virtual axial levels of an ISLES head; a slab is a run of consecutive levels."""
_SEPARATION = np.ones((3, 3, 3), bool)


@dataclass
class _LesionKind:
    """How to draw one kind of lesion: label value, semi-axes range (voxels), lobes, counts."""

    value: int
    axes_low: tuple[float, float, float]
    axes_high: tuple[float, float, float]
    max_lobes: int
    min_count: int
    max_count: int


def _check_mimics(mimics: Sequence[int]) -> tuple[int, int]:
    values = tuple(mimics) if not isinstance(mimics, (str, bytes)) else ()
    if len(values) != 2 or any(isinstance(v, bool) or int(v) != v for v in values) or not 0 <= values[0] <= values[1]:
        raise ValueError(f"mimics must be (min, max) integers with 0 <= min <= max, not {mimics!r}")
    return int(values[0]), int(values[1])


def _mimic_draw(seed: int, index: int, part: int, mimics: tuple[int, int]) -> tuple[np.random.Generator | None, int]:
    """The mimics' own generator and count for subject/patient ``index``, slab ``part`` (``None``: none)."""
    if mimics[1] == 0:
        return None, 0
    rng = np.random.default_rng([int(seed), int(index), 2, int(part)])
    return rng, int(rng.integers(mimics[0], mimics[1] + 1))


def _check_common(count_name: str, count: int, seed: int, spacing: Sequence[float]) -> None:
    if isinstance(count, bool) or int(count) != count or count < 1:
        raise ValueError(f"{count_name} must be an integer >= 1, not {count!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, not {seed!r}")
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive values (mm), not {tuple(spacing)}")


def _smooth_noise(rng: np.random.Generator, shape: Sequence[int], sigma: Sequence[float]) -> np.ndarray:
    """Gaussian-smoothed white noise with unit standard deviation, float32."""
    field = ndimage.gaussian_filter(rng.standard_normal(tuple(shape)), sigma)
    return (field / max(float(field.std()), 1e-12)).astype(np.float32)


def _blob(
    rng: np.random.Generator, centre: np.ndarray, kind: _LesionKind, noise: np.ndarray, region: np.ndarray
) -> tuple[tuple[slice, ...], np.ndarray]:
    """One irregular lesion: its bounding box in the volume and its mask inside that box."""
    lobes = int(rng.integers(1, kind.max_lobes + 1))
    axes = rng.uniform(kind.axes_low, kind.axes_high, size=(lobes, 3))
    offsets = rng.uniform(-0.8, 0.8, size=(lobes, 3)) * axes[:1]
    offsets[0] = 0.0
    angle = rng.uniform(0.0, np.pi)
    extent_xy = float(np.max(np.hypot(offsets[:, 0], offsets[:, 1]) + axes[:, :2].max(axis=1)))
    extent_z = float(np.max(np.abs(offsets[:, 2]) + axes[:, 2]))
    half = np.ceil((1.0 + NOISE_AMPLITUDE) * np.array([extent_xy, extent_xy, extent_z])).astype(int) + 1
    low = np.maximum(centre - half, 0)
    high = np.minimum(centre + half + 1, region.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    dx, dy, dz = (np.arange(a, b, dtype=np.float32) - c for a, b, c in zip(low, high, centre))
    u = dx[:, None, None] * np.cos(angle) + dy[None, :, None] * np.sin(angle)
    v = -dx[:, None, None] * np.sin(angle) + dy[None, :, None] * np.cos(angle)
    o, a = offsets[:, :, None, None, None], axes[:, :, None, None, None]
    radius = np.sqrt(((u - o[:, 0]) / a[:, 0]) ** 2 + ((v - o[:, 1]) / a[:, 1]) ** 2 + ((dz - o[:, 2]) / a[:, 2]) ** 2)
    radius = radius.min(axis=0) + NOISE_AMPLITUDE * np.clip(noise[box], -1.0, 1.0)
    mask = (radius < 1.0) & region[box]
    mask[tuple(centre - low)] = True
    return box, mask


def _add_lesions(
    rng: np.random.Generator,
    label: np.ndarray,
    probability: np.ndarray,
    region: np.ndarray,
    noise: np.ndarray,
    kind: _LesionKind,
    target_voxels: float,
    max_voxels: float,
    max_tries: int | None = None,
) -> int:
    """Add separated lesions of ``kind`` to ``label`` (in place) until the target is met; their count.

    A candidate is rejected when its 26-neighbourhood touches any labelled voxel or when it would
    push this kind's voxel count past ``max_voxels``. Stops once ``target_voxels`` and
    ``kind.min_count`` are both reached, at ``kind.max_count`` lesions, or after ``max_tries``
    candidates (default ``3 * kind.max_count + 200``).
    """
    if max_tries is None:
        max_tries = 3 * kind.max_count + 200
    weights = (probability * region).ravel().astype(np.float64)
    if weights.sum() <= 0:
        raise ValueError(f"no voxel may hold a lesion of label {kind.value}; enlarge the shape")
    centres = np.stack(
        np.unravel_index(rng.choice(weights.size, size=max_tries, p=weights / weights.sum()), label.shape), axis=1
    )
    count, total = 0, 0
    for centre in centres:
        box, mask = _blob(rng, centre, kind, noise, region)
        size = int(mask.sum())
        if total + size > max_voxels:
            continue
        if np.any(ndimage.binary_dilation(mask, _SEPARATION) & (label[box] > 0)):
            continue
        label[box][mask] = kind.value
        count, total = count + 1, total + size
        if (total >= target_voxels and count >= kind.min_count) or count >= kind.max_count:
            break
    if count < kind.min_count:
        logger.warning("placed only %d lesions of label %d (wanted >= %d)", count, kind.value, kind.min_count)
    return count


def _blend(base: np.ndarray, halo: np.ndarray, core: np.ndarray, halo_value, core_value) -> np.ndarray:
    """``base`` where both weights are 0, ``halo_value`` in the halo, ``core_value`` in the core."""
    w_halo = halo * (1.0 - core)
    return base * (1.0 - w_halo - core) + halo_value * w_halo + core_value * core


def _blurred_weight(
    mask: np.ndarray, sigma: Sequence[float], gain: float, floor: float, region: np.ndarray | None = None
) -> np.ndarray:
    """Partial-volume weight of a lesion mask: ``max(clip(gain * blur(mask), 0, 1) [* region], floor * mask)``."""
    weight = np.clip(ndimage.gaussian_filter(mask.astype(np.float32), sigma) * gain, 0.0, 1.0)
    if region is not None:
        weight = weight * region
    return np.maximum(weight, floor * mask)


def _mimic_mask(
    rng: np.random.Generator | None,
    label: np.ndarray,
    region: np.ndarray,
    kind: _LesionKind,
    clearance: Sequence[float],
) -> np.ndarray:
    """Unlabelled lesion mimics: ``kind.max_count`` separated blobs in ``region``, away from ``label``.

    A mimic's centre lies at least ``clearance`` (voxels per axis, an ellipsoid) from every labelled
    voxel, so a mimic is a *far* false-positive source, not a boundary one. Drawn from its own
    generator (``None``: no mimics), so the labelled phantom is the same with or without them.
    """
    mimics = np.zeros(label.shape, bool)
    if rng is None or kind.max_count == 0 or not label.any():
        return mimics
    distance = ndimage.distance_transform_edt(label == 0, sampling=[1.0 / c for c in clearance])
    allowed = region & (distance >= 1.0)
    if not allowed.any():
        return mimics
    scratch = (label > 0).astype(np.uint8)
    noise = _smooth_noise(rng, label.shape, (1.0, 1.0, 0.5))
    _add_lesions(rng, scratch, allowed.astype(float), allowed, noise, kind, np.inf, np.inf)
    return scratch == kind.value


# ----------------------------------------------------------------------------------------- ISLES


def _isles_patient(rng: np.random.Generator, shape: Sequence[int]) -> dict:
    """Per-patient anatomy, lesion pattern and tissue values shared by its slabs."""
    nx, ny = shape
    side = rng.choice([-1.0, 1.0])  # hemisphere of the stroke (-1: lower x)
    return {
        "centre": np.array([nx, ny], float) / 2 + rng.uniform(-0.03, 0.03, 2) * np.array([nx, ny]),
        "axes": np.array([rng.uniform(0.40, 0.45) * nx, rng.uniform(0.42, 0.47) * ny]),
        "skull": rng.uniform(1.8, 2.8),  # voxels
        "csf": rng.uniform(0.6, 1.2),
        "cortex": rng.uniform(2.0, 3.0),
        "ventricle": rng.uniform(0.8, 1.3),
        "side": side,
        "pattern": rng.choice(["territorial", "scattered"]),
        "territory": np.array([nx / 2 + side * rng.uniform(0.15, 0.25) * nx, ny / 2 + rng.uniform(-0.15, 0.15) * ny]),
        "values": {  # per tissue: AIR, BONE, CSF, GM, WM
            "CT": np.array(
                [-1000.0, rng.uniform(900, 1200), rng.uniform(4, 12), rng.uniform(34, 40), rng.uniform(25, 30)]
            ),
            "CT_CBF": np.array([0.0, 0.0, 2.0, rng.uniform(45, 65), rng.uniform(18, 26)]),
            "CT_CBV": np.array([0.0, 0.0, 0.2, rng.uniform(3.0, 4.0), rng.uniform(1.5, 2.2)]),
            "CT_MTT": np.array([0.0, 0.0, 1.0, rng.uniform(3.5, 4.5), rng.uniform(4.2, 5.2)]),
            "CT_Tmax": np.array([0.0, 0.0, 0.5, rng.uniform(0.6, 1.2), rng.uniform(1.0, 1.8)]),
        },
        "core": {
            "CT": rng.uniform(-7.0, -4.0),  # additive (HU)
            "CT_CBF": rng.uniform(0.2, 0.4),  # multiplicative
            "CT_CBV": rng.uniform(0.35, 0.6),
            "CT_MTT": rng.uniform(1.8, 2.6),
            "CT_Tmax": rng.uniform(9.0, 14.0),  # absolute (s)
        },
        "halo": {"CT_CBF": rng.uniform(0.55, 0.75), "CT_CBV": rng.uniform(0.95, 1.15), "CT_MTT": rng.uniform(1.3, 1.6)},
        "halo_tmax": rng.uniform(6.0, 8.5),
        "noise": {"CT": 2.5, "CT_CBF": 4.0, "CT_CBV": 0.25, "CT_MTT": 0.4, "CT_Tmax": 0.5},
    }


def _isles_tissue(rng: np.random.Generator, patient: dict, shape: Sequence[int], levels: np.ndarray) -> np.ndarray:
    """Tissue map ``(X, Y, Z)`` of a slab whose slices sit at the virtual ``levels`` of the head."""
    nx, ny = shape
    t = levels / (_ISLES_LEVELS - 1)
    scale = np.sqrt(np.clip(1.0 - ((t - 0.45) / 0.75) ** 2, 0.2, 1.0))  # head narrows at the ends
    x = np.arange(nx, dtype=float)[:, None, None] - patient["centre"][0]
    y = np.arange(ny, dtype=float)[None, :, None] - patient["centre"][1]
    ax, ay = patient["axes"][0] * scale, patient["axes"][1] * scale
    rho = np.sqrt((x / ax) ** 2 + (y / ay) ** 2)  # (X, Y, Z), 1 on the head outline
    depth = (1.0 - rho) * np.minimum(ax, ay)  # approximate depth below the outline, voxels
    wiggle = _smooth_noise(rng, (nx, ny, len(levels)), (2.0, 2.0, 0.5))
    tissue = np.full((nx, ny, len(levels)), AIR, np.uint8)
    tissue[depth > 0] = BONE
    brain_depth = depth - patient["skull"] - patient["csf"]
    tissue[(depth > patient["skull"]) & (brain_depth <= 0)] = CSF
    tissue[brain_depth > 0] = GM
    tissue[brain_depth + 0.7 * wiggle > patient["cortex"]] = WM
    tissue[(brain_depth > 0) & (brain_depth < patient["cortex"] + 1.5) & (wiggle > 1.3)] = CSF  # sulci
    # lateral ventricles, largest in the middle of the head
    profile = np.clip(1.0 - ((t - 0.55) / 0.2) ** 2, 0.0, 1.0) * patient["ventricle"]
    for sign in (-1.0, 1.0):
        vx, vy = sign * 0.07 * nx, 0.03 * ny
        inside = ((x - vx) / np.maximum(0.05 * nx * profile, 1e-3)) ** 2 + (
            (y - vy) / np.maximum(0.17 * ny * profile, 1e-3)
        ) ** 2 < 1.0
        tissue[inside & (profile > 0.15)] = CSF
    return tissue


def _isles_slab(
    rng: np.random.Generator,
    patient: dict,
    shape: Sequence[int],
    levels: np.ndarray,
    mimic_rng: np.random.Generator | None = None,
    num_mimics: int = 0,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The five maps and the ``OT`` label of one slab, with ``num_mimics`` old infarcts (unlabelled)."""
    nx, ny = shape
    nz = len(levels)
    tissue = _isles_tissue(rng, patient, shape, levels)
    parenchyma = (tissue == GM) | (tissue == WM)
    x = np.arange(nx, dtype=float)[:, None, None]
    y = np.arange(ny, dtype=float)[None, :, None]
    hemisphere = np.sign(x - patient["centre"][0]) == patient["side"]
    if patient["pattern"] == "territorial":
        sigma = rng.uniform(0.08, 0.14) * nx
        probability = np.exp(
            -((x - patient["territory"][0]) ** 2 + (y - patient["territory"][1]) ** 2) / (2 * sigma**2)
        ) + np.zeros((1, 1, nz))
    else:
        probability = np.ones((nx, ny, nz))
    region = parenchyma & hemisphere
    label = np.zeros((nx, ny, nz), np.uint8)
    kind = _LesionKind(
        1, (0.9, 0.9, 0.3), (2.4, 2.4, 0.9), max_lobes=3, min_count=3, max_count=max(60, nx * ny * nz // 1000)
    )
    noise = _smooth_noise(rng, label.shape, (1.0, 1.0, 0.5))
    _add_lesions(
        rng, label, probability, region, noise, kind, rng.uniform(0.0015, 0.006) * label.size, 0.009 * label.size
    )

    lesion = label.astype(np.float32)
    core = _blurred_weight(lesion, (0.5, 0.5, 0.0), 1.4, 0.8, parenchyma)
    old_kind = _LesionKind(3, kind.axes_low, kind.axes_high, max_lobes=3, min_count=0, max_count=num_mimics)
    old = _mimic_mask(mimic_rng, label, parenchyma, old_kind, clearance=(6.0, 6.0, 1.5)).astype(np.float32)
    old = _blurred_weight(old, (0.5, 0.5, 0.0), 1.4, 0.8, parenchyma)
    if old.any():  # chronic infarct: hypodense, low CBF and CBV, but no perfusion delay (MTT, Tmax normal)
        old_effect = {
            "CT": mimic_rng.uniform(-20.0, -10.0),  # additive (HU)
            "CT_CBF": mimic_rng.uniform(0.25, 0.45),  # multiplicative
            "CT_CBV": mimic_rng.uniform(0.3, 0.5),
            "CT_MTT": mimic_rng.uniform(0.95, 1.15),
            "CT_Tmax": 1.0,
        }
    halo = np.clip(ndimage.gaussian_filter(lesion, (2.5, 2.5, 0.4)) / 0.12, 0.0, 1.0) * parenchyma
    vessels = np.zeros(label.shape, np.float32)
    spots = np.flatnonzero(((tissue == GM) | (tissue == CSF)).ravel())
    if spots.size:
        vessels.flat[rng.choice(spots, size=min(spots.size, int(rng.integers(4, 10)) * nz), replace=False)] = 1.0
        vessels = np.clip(ndimage.gaussian_filter(vessels, (0.7, 0.7, 0.0)) * 4.0, 0.0, 1.0)
    bias = _bias_field(rng, shape, nz).astype(np.float32)
    head = tissue != AIR
    maps = {}
    for name in ISLES_MAPS:
        base = patient["values"][name][np.minimum(tissue, WM)].astype(np.float32)
        if old.any():
            changed = base + old_effect[name] if name == "CT" else base * old_effect[name]
            base = base * (1.0 - old) + changed * old
        if name == "CT":
            image = _blend(base, halo, core, base, base + patient["core"][name])
        elif name == "CT_Tmax":
            image = _blend(base, halo, core, patient["halo_tmax"], patient["core"][name])
        else:
            image = _blend(base, halo, core, base * patient["halo"][name], base * patient["core"][name])
        if name in ("CT_CBF", "CT_CBV"):
            image = image * (1.0 + 2.0 * vessels)
        elif name in ("CT_MTT", "CT_Tmax"):
            image = image * (1.0 - 0.5 * vessels)
        image = ndimage.gaussian_filter(image, (0.5, 0.5, 0.0))  # partial volume
        if name == "CT":
            image = image + 25.0 * (bias - 1.0) * head
        else:
            image = image * bias
        image = image + rng.normal(0.0, patient["noise"][name], size=image.shape) * head
        if name != "CT":
            image = np.clip(image, 0.0, None)
        maps[name] = image.astype(np.float32)
    return maps, label


def make_isles_phantoms(
    output_dir: str | Path,
    num_cases: int = 8,
    seed: int = 0,
    shape: Sequence[int] = (64, 64),
    num_slices: Sequence[int] = (2, 8),
    spacing: Sequence[float] = (0.9, 0.9, 5.0),
    mimics: Sequence[int] = (0, 0),
) -> Path:
    """Write synthetic CT perfusion slabs with small infarct lesions in the raw ISLES 2018 layout.

    Files per case ``N`` (from 1): ``TRAINING/case_N/SMIR.Brain.XX.O.<MAP>.<id>/SMIR.Brain.XX.O.<MAP>.<id>.nii``
    for ``MAP`` in CT, CT_CBF, CT_CBV, CT_MTT, CT_Tmax (float32) and OT (uint8, 1 = lesion), all with
    the affine ``diag(spacing)`` and a per-patient origin (the two slabs of a patient are stacked
    along z). ``output_dir/phantom_patients.json`` maps every case to its patient.

    Args:
        output_dir: dataset folder; ``TRAINING/`` is created inside.
        num_cases: number of cases (slabs); the last patient may lose its second slab.
        seed: patient ``k`` is drawn from ``numpy.random.default_rng([seed, k])``.
        shape: in-plane size ``(X, Y)`` (each >= 32).
        num_slices: ``(min, max)`` slices per slab (inclusive, ``1 <= min <= max <= 16``).
        spacing: voxel size in mm ``(x, y, z)``.
        mimics: ``(min, max)`` unlabelled old infarcts per slab (hypodense, low CBF and CBV, no
            perfusion delay), at least 6 voxels in-plane from any lesion, in either hemisphere:
            far-away false-positive sources. Drawn from their own generator, so the labelled
            phantom is the same for any ``mimics``.

    Returns:
        ``Path(output_dir)``, ready for :func:`wss_monai.data.isles.find_isles_cases`.

    Raises:
        ValueError: an argument out of range (the message names it and the value received).
    """
    _check_common("num_cases", num_cases, seed, spacing)
    if len(shape) != 2 or min(shape) < 32:
        raise ValueError(f"shape must be two sizes >= 32 (X, Y), not {tuple(shape)}")
    if len(num_slices) != 2 or not 1 <= num_slices[0] <= num_slices[1] <= _ISLES_LEVELS // 2:
        raise ValueError(
            f"num_slices must be (min, max) with 1 <= min <= max <= {_ISLES_LEVELS // 2}, not {tuple(num_slices)}"
        )
    mimics = _check_mimics(mimics)
    shape = (int(shape[0]), int(shape[1]))
    root = Path(output_dir)
    patients: dict[str, str] = {}
    case, patient_index = 0, 0
    while case < num_cases:
        rng = np.random.default_rng([int(seed), patient_index])
        patient = _isles_patient(rng, shape)
        sizes = rng.integers(num_slices[0], num_slices[1] + 1, size=2 if rng.random() < 0.35 else 1)
        start = int(rng.integers(0, _ISLES_LEVELS - int(sizes.sum()) + 1))
        origin = np.round(-np.array([*shape, _ISLES_LEVELS]) * np.array(spacing) / 2 + rng.uniform(-20, 20, 3), 3)
        for part, nz in enumerate(sizes):
            if case >= num_cases:
                break
            levels = np.arange(start, start + nz)
            maps, label = _isles_slab(rng, patient, shape, levels, *_mimic_draw(seed, patient_index, part, mimics))
            affine = np.diag([*map(float, spacing), 1.0])
            affine[:3, 3] = origin + np.array([0.0, 0.0, start * float(spacing[2])])
            folder = root / "TRAINING" / f"case_{case + 1}"
            for index, (name, array) in enumerate([*maps.items(), ("OT", label)]):
                stem = f"SMIR.Brain.XX.O.{name}.{300000 + 10 * case + index}"
                (folder / stem).mkdir(parents=True, exist_ok=True)
                _save(array, affine, folder / stem / f"{stem}.nii")
            patients[f"case_{case + 1}"] = f"phantom_patient{patient_index + 1:03d}"
            start += int(nz)
            case += 1
        patient_index += 1
    root.mkdir(parents=True, exist_ok=True)
    (root / "phantom_patients.json").write_text(json.dumps(patients, indent=2) + "\n")
    logger.info("wrote %d ISLES phantom cases of %d patients to %s", num_cases, patient_index, root / "TRAINING")
    return root


# ------------------------------------------------------------------------------------------- WMH


def _site_parameters(seed: int, site: str) -> dict:
    """Scanner-like parameters of a site: intensity scales, noise, bias strength, lesion contrast."""
    rng = np.random.default_rng([int(seed), 1, zlib.crc32(site.encode())])
    return {
        "scale": (rng.uniform(200.0, 1500.0), rng.uniform(200.0, 1500.0)),  # FLAIR, T1
        "noise": rng.uniform(0.02, 0.05),
        "bias": rng.uniform(1.0, 3.0),
        "contrast": rng.uniform(0.8, 1.2),
    }


_LOADS = {"low": (0.001, 0.0025), "moderate": (0.0025, 0.0045), "high": (0.0045, 0.0075)}


def _wmh_subject(
    rng: np.random.Generator,
    shape: Sequence[int],
    site: dict,
    mimic_rng: np.random.Generator | None = None,
    num_mimics: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FLAIR, T1 (float32) and the WMH label (uint8: 0, 1, 2) of one subject, with ``num_mimics``
    unlabelled FLAIR-bright grey-matter spots."""
    nx, ny, nz = shape
    load = rng.choice(list(_LOADS), p=[0.4, 0.35, 0.25])
    atrophy = {"low": 0.9, "moderate": 1.1, "high": 1.35}[load] * rng.uniform(0.85, 1.15)
    centre = np.array(shape, float) / 2 + rng.uniform(-0.03, 0.03, 3) * np.array(shape)
    axes = np.array([rng.uniform(0.42, 0.47) * nx, rng.uniform(0.44, 0.48) * ny, rng.uniform(0.58, 0.68) * nz])
    x = np.arange(nx, dtype=np.float32)[:, None, None] - centre[0]
    y = np.arange(ny, dtype=np.float32)[None, :, None] - centre[1]
    z = np.arange(nz, dtype=np.float32)[None, None, :] - centre[2]
    rho = np.sqrt((x / axes[0]) ** 2 + (y / axes[1]) ** 2 + (z / axes[2]) ** 2)
    depth = (1.0 - rho) * axes[:2].min()  # approximate in-plane depth below the scalp, voxels
    wiggle = _smooth_noise(rng, shape, (2.0, 2.0, 0.7))
    scalp, skull, csf, cortex = rng.uniform(1.5, 2.5), rng.uniform(1.5, 2.5), rng.uniform(0.8, 1.5), rng.uniform(2, 3)
    tissue = np.full(tuple(shape), AIR, np.uint8)
    tissue[depth > 0] = SCALP
    tissue[depth > scalp] = BONE
    tissue[depth > scalp + skull] = CSF
    brain_depth = depth - scalp - skull - csf
    tissue[brain_depth > 0] = GM
    tissue[brain_depth + 0.7 * wiggle > cortex] = WM
    tissue[(brain_depth > 0) & (brain_depth < cortex + 1.5) & (wiggle > 1.3)] = CSF  # sulci
    for sign in (-1.0, 1.0):  # thalami, then lateral ventricles
        deep = (
            ((x - sign * 0.11 * nx) / (0.07 * nx)) ** 2
            + ((y - 0.05 * ny) / (0.09 * ny)) ** 2
            + ((z + 0.12 * nz) / (0.12 * nz)) ** 2
        )
        tissue[(deep < 1.0) & (brain_depth > 0)] = DEEP_GM
    ventricles = np.zeros(tuple(shape), bool)
    for sign in (-1.0, 1.0):
        angle = sign * rng.uniform(0.1, 0.3)
        u = (x - sign * 0.075 * nx) * np.cos(angle) + (y - 0.02 * ny) * np.sin(angle)
        v = -(x - sign * 0.075 * nx) * np.sin(angle) + (y - 0.02 * ny) * np.cos(angle)
        ventricles |= (u / (0.045 * nx * atrophy)) ** 2 + (v / (0.17 * ny * atrophy)) ** 2 + (
            (z - 0.08 * nz) / (0.12 * nz)
        ) ** 2 < 1.0
    tissue[ventricles] = CSF
    rim = ndimage.binary_dilation(ventricles, np.ones((3, 3, 1), bool)) & ~ventricles  # ependyma

    label = np.zeros(tuple(shape), np.uint8)
    white = tissue == WM
    noise = _smooth_noise(rng, shape, (1.0, 1.0, 0.5))
    n = label.size
    parenchyma = (tissue == WM) | (tissue == GM) | (tissue == DEEP_GM)
    other = _LesionKind(
        2, (1.5, 1.5, 0.6), (2.8, 2.8, 1.2), max_lobes=1, min_count=1, max_count=int(rng.integers(1, 4))
    )
    _add_lesions(rng, label, np.ones(label.shape), parenchyma & ~rim, noise, other, 0.0015 * n, 0.0015 * n)
    distance = ndimage.distance_transform_edt(~ventricles, sampling=(1.0, 1.0, 3.0))
    periventricular = np.exp(-distance / 4.0)
    target, cap = rng.uniform(*_LOADS[load]) * n, 0.008 * n
    if load == "high":  # confluent periventricular caps first
        caps = _LesionKind(1, (2.5, 2.5, 0.8), (4.0, 4.0, 1.3), max_lobes=3, min_count=1, max_count=2)
        _add_lesions(rng, label, periventricular**3, white, noise, caps, 0.0, 0.4 * cap)
    already = int(np.count_nonzero(label == 1))
    punctate = _LesionKind(1, (0.7, 0.7, 0.35), (2.0, 2.0, 0.9), max_lobes=3, min_count=6, max_count=max(400, n // 200))
    _add_lesions(rng, label, 3.0 * periventricular + 0.3, white, noise, punctate, target - already, cap - already)

    lesion = _blurred_weight(label == 1, (0.4, 0.4, 0.0), 1.3, 0.85) * rng.uniform(0.8, 1.0)
    grey = (tissue == GM) | (tissue == DEEP_GM)
    spot_kind = _LesionKind(3, punctate.axes_low, punctate.axes_high, max_lobes=3, min_count=0, max_count=num_mimics)
    spots = _mimic_mask(mimic_rng, label, grey, spot_kind, clearance=(5.0, 5.0, 1.5)).astype(np.float32)
    spots = _blurred_weight(spots, (0.4, 0.4, 0.0), 1.3, 0.85)
    images = []
    #                      AIR  BONE  CSF   GM    WM   DEEP  SCALP
    for channel, (table, wmh, other_value, rim_value) in enumerate(
        (
            (np.array([0.0, 0.08, 0.22, 1.12, 1.0, 1.05, 0.7]), rng.uniform(0.55, 0.85), 0.4, 0.25),  # FLAIR
            (np.array([0.0, 0.1, 0.25, 0.68, 1.0, 0.78, 1.2]), -rng.uniform(0.2, 0.35), 0.35, 0.0),  # T1
        )
    ):
        image = table[tissue].astype(np.float32) * rng.uniform(0.97, 1.03)
        image = image + site["contrast"] * wmh * lesion + rim_value * rim
        if channel == 0 and spots.any():  # FLAIR-bright, T1-normal: cortical / deep grey hyperintensities
            image = image + site["contrast"] * wmh * spots * mimic_rng.uniform(0.9, 1.1)
        image[label == 2] = other_value
        image = ndimage.gaussian_filter(image, (0.6, 0.6, 0.3))  # partial volume
        bias = _bias_field(rng, shape[:2], nz).astype(np.float32) ** site["bias"]
        image = image * bias + rng.normal(0.0, site["noise"], size=image.shape) * (tissue != AIR)
        images.append((np.clip(image, 0.0, None) * site["scale"][channel]).astype(np.float32))
    return images[0], images[1], label


def make_wmh_phantoms(
    output_dir: str | Path,
    num_subjects: int = 8,
    seed: int = 0,
    shape: Sequence[int] = (64, 64, 24),
    spacing: Sequence[float] = (1.0, 1.0, 3.0),
    sites: Sequence[str] = ("Utrecht", "Singapore"),
    mimics: Sequence[int] = (0, 0),
) -> Path:
    """Write synthetic FLAIR/T1 brains with small white matter hyperintensities in the raw WMH 2017 layout.

    Files per subject ``k`` (from 0, site ``sites[k % len(sites)]``): ``<site>/<k>/pre/FLAIR.nii.gz``,
    ``<site>/<k>/pre/T1.nii.gz`` (float32) and ``<site>/<k>/wmh.nii.gz`` (uint8: 0 background, 1 WMH,
    2 other pathology), all with the affine ``diag(spacing)`` and a random origin.

    Args:
        output_dir: dataset folder; the site folders are created inside.
        num_subjects: number of subjects.
        seed: subject ``k`` is drawn from ``numpy.random.default_rng([seed, k])``.
        shape: volume size ``(X, Y, Z)`` (``X, Y >= 32``, ``Z >= 8``).
        spacing: voxel size in mm ``(x, y, z)``.
        sites: site folders, relative paths such as ``"Utrecht"`` or ``"Amsterdam/GE3T"``.
        mimics: ``(min, max)`` unlabelled FLAIR-bright, T1-normal spots per subject in the cortex
            and deep grey matter, at least 5 voxels in-plane from any label: far-away
            false-positive sources. Drawn from their own generator, so the labelled phantom is the
            same for any ``mimics``.

    Returns:
        ``Path(output_dir)``, ready for :func:`wss_monai.data.wmh.find_wmh_cases`.

    Raises:
        ValueError: an argument out of range (the message names it and the value received).
    """
    _check_common("num_subjects", num_subjects, seed, spacing)
    if len(shape) != 3 or min(shape[:2]) < 32 or shape[2] < 8:
        raise ValueError(f"shape must be (X, Y, Z) with X, Y >= 32 and Z >= 8, not {tuple(shape)}")
    if isinstance(sites, str) or not sites or len(set(sites)) != len(sites):
        raise ValueError(f"sites must be a non-empty sequence of distinct folder names, not {sites!r}")
    for site in sites:
        parts = PurePosixPath(site).parts if isinstance(site, str) else ()
        if not parts or PurePosixPath(site).is_absolute() or any(p in ("..", ".") for p in parts):
            raise ValueError(f"sites must be relative folder paths such as 'Utrecht' or 'Amsterdam/GE3T', not {site!r}")
    mimics = _check_mimics(mimics)
    shape = tuple(int(s) for s in shape)
    root = Path(output_dir)
    parameters = {site: _site_parameters(seed, site) for site in sites}
    for index in range(int(num_subjects)):
        site = sites[index % len(sites)]
        rng = np.random.default_rng([int(seed), index])
        flair, t1, label = _wmh_subject(rng, shape, parameters[site], *_mimic_draw(seed, index, 0, mimics))
        affine = np.diag([*map(float, spacing), 1.0])
        affine[:3, 3] = np.round(-np.array(shape) * np.array(spacing) / 2 + rng.uniform(-20.0, 20.0, 3), 3)
        folder = root / site / str(index)
        (folder / "pre").mkdir(parents=True, exist_ok=True)
        _save(flair, affine, folder / "pre" / "FLAIR.nii.gz")
        _save(t1, affine, folder / "pre" / "T1.nii.gz")
        _save(label, affine, folder / "wmh.nii.gz")
    logger.info("wrote %d WMH phantom subjects of the sites %s to %s", num_subjects, list(sites), root)
    return root


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: ``python -m wss_monai.data.lesion_phantoms --kind isles|wmh --output_dir DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m wss_monai.data.lesion_phantoms", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--kind", required=True, choices=("isles", "wmh"))
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_cases", type=int, default=8, help="ISLES cases or WMH subjects")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sites", nargs="+", default=["Utrecht", "Singapore"], help="WMH site folders")
    parser.add_argument(
        "--mimics", type=int, nargs=2, default=[0, 0], metavar=("MIN", "MAX"), help="unlabelled lesion mimics per case"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.kind == "isles":
        return make_isles_phantoms(args.output_dir, num_cases=args.num_cases, seed=args.seed, mimics=args.mimics)
    return make_wmh_phantoms(
        args.output_dir, num_subjects=args.num_cases, seed=args.seed, sites=args.sites, mimics=args.mimics
    )


if __name__ == "__main__":
    main()
