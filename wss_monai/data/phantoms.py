"""Synthetic cardiac short-axis cine phantoms written in the raw ACDC layout.

Each patient gets two frames (ED = ``frame01``, ES = a later frame with a smaller LV cavity and a
thicker myocardium), each a volume ``(X, Y, Z)`` of ``Z`` short-axis slices from base (``z = 0``)
to apex, with:

* labels 0 background, 1 RV, 2 MYO, 3 LV: an elliptic LV disc of radius
  :math:`r_{LV}(t) = R\\,\\sqrt{1 - (t / t_{apex})^{2.5}}` (``t = z / (Z - 1)``), a myocardial ring of
  constant thickness around it (a solid apical cap where the LV has vanished) and an RV crescent,
  the part of an ellipse beside the LV that lies outside the epicardium, shrinking faster than the
  LV towards the apex;
* an image with bright blood in both ventricles (so thresholding cannot tell RV from LV), dark
  myocardium and papillary muscles, a textured background (body, chest-wall ring, lungs, liver,
  aorta, random blobs), a smooth multiplicative bias field and Gaussian noise, clipped to
  ``[0, 1]``;
* optional manual-style scribbles: 1-pixel strokes along the myocardial mid-line, inside the LV and
  RV and around the heart, cut to the ground truth so that every stroke voxel carries its true
  class; the other voxels hold ``scribble_unlabelled``, and about one slice in five has no stroke.
  About 1-3 % of the voxels are annotated at the default 96 x 96 (strokes scale with the in-plane
  size, so the fraction grows as 1 / size: about 3-5 % at 48 x 48).

Patient ``k`` is drawn from ``numpy.random.default_rng([seed, k])``: the same seed gives identical
arrays, whatever ``num_patients``.

Example:
    >>> import tempfile
    >>> root = make_cardiac_phantoms(tempfile.mkdtemp(), num_patients=2, shape=(64, 64))
    >>> sorted(p.name for p in (root / "training" / "patient001").iterdir())[:3]
    ['Info.cfg', 'patient001_4d.nii.gz', 'patient001_frame01.nii.gz']

Command line::

    python -m wss_monai.data.phantoms --output_dir /tmp/acdc_phantoms --num_patients 20 --seed 0
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

__all__ = ["make_cardiac_phantoms", "main"]

logger = logging.getLogger(__name__)

BACKGROUND, RV, MYO, LV = 0, 1, 2, 3
EMPTY_SLICE_FRACTION = 0.2
"""Fraction of slices left without any scribble."""
_CURVE_SAMPLES = 800


@dataclass
class _Heart:
    """Geometry of one frame, in mm relative to the per-slice LV centre (arrays are per slice)."""

    centre: np.ndarray  # (Z, 2) LV centre in voxels
    theta: float  # rotation of the LV ellipse
    ellipticity: float  # minor / major axis ratio of the LV ellipse
    r_lv: np.ndarray  # (Z,) LV radius (major axis), 0 where absent
    r_epi: np.ndarray  # (Z,) epicardial radius, 0 where no heart
    phi_rv: float  # direction of the RV from the LV centre
    rv_offset: np.ndarray  # (Z,) distance of the RV ellipse centre from the LV centre
    rv_axes: np.ndarray  # (Z, 2) RV ellipse semi-axes along / across phi_rv


def _validate(num_patients, seed, shape, num_slices, spacing, scribble_unlabelled, noise) -> None:
    if int(num_patients) < 1:
        raise ValueError(f"num_patients must be >= 1, not {num_patients}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, not {seed}")
    if len(shape) != 2 or min(shape) < 32:
        raise ValueError(f"shape must be two sizes >= 32 (X, Y), not {tuple(shape)}")
    if len(num_slices) != 2 or not 3 <= num_slices[0] <= num_slices[1]:
        raise ValueError(f"num_slices must be (min, max) with 3 <= min <= max, not {tuple(num_slices)}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive values (mm), not {tuple(spacing)}")
    if not 0 <= scribble_unlabelled <= 255 or scribble_unlabelled in (BACKGROUND, RV, MYO, LV):
        raise ValueError(
            f"scribble_unlabelled must be a uint8 value other than the classes 0-3, not {scribble_unlabelled}"
        )
    if noise < 0:
        raise ValueError(f"noise must be >= 0, not {noise}")


def _profile(t: np.ndarray, apex: float, power: float) -> np.ndarray:
    """Radius factor from base (1) to apex (0): ``sqrt(1 - (t / apex) ** power)``, 0 past the apex."""
    return np.sqrt(np.clip(1.0 - (t / apex) ** power, 0.0, 1.0))


def _draw_heart(rng: np.random.Generator, shape: Sequence[int], nz: int, spacing: Sequence[float]) -> dict:
    """Per-patient anatomy shared by both frames (sizes in mm, positions in voxels)."""
    fov_mm = min(shape[0] * spacing[0], shape[1] * spacing[1])
    pixel = max(spacing[0], spacing[1])
    r_lv = rng.uniform(17.0, 26.0)
    thickness = max(rng.uniform(3.0, 6.0), 1.5 * pixel)  # >= 1.5 px keeps the ring closed
    rv_along, rv_across = rng.uniform(0.9, 1.1), rng.uniform(1.2, 1.5)
    extent = (r_lv + thickness) * (0.5 + rv_across)  # farthest RV point from the LV centre
    scale = min(1.0, 0.34 * fov_mm / extent)
    r_lv = max(r_lv * scale, 2.0 * pixel)
    t = np.arange(nz) / (nz - 1)
    drift = rng.uniform(-3.0, 3.0, size=2)
    centre = (
        np.array(shape, float)[None] / 2
        + rng.uniform(-0.07, 0.07, size=2)[None] * np.array(shape)[None]
        + drift[None] * t[:, None]
        + rng.normal(0.0, 0.3, size=(nz, 2))
    )
    return {
        "centre": centre,
        "theta": rng.uniform(0.0, np.pi),
        "ellipticity": rng.uniform(0.85, 1.0),
        "r_lv": r_lv,
        "thickness": thickness,
        "lv_apex": rng.uniform(0.92, 1.15),
        "rv_apex": rng.uniform(0.8, 1.0),
        "rv_along": rv_along,
        "rv_across": rv_across,
        "phi_rv": np.pi + rng.normal(0.0, 0.3),
        "es_lv": rng.uniform(0.6, 0.75),
        "es_thickness": rng.uniform(1.3, 1.6),
        "es_rv": rng.uniform(0.65, 0.75),
        "t": t,
    }


def _frame_geometry(anatomy: dict, systole: bool) -> _Heart:
    """LV, myocardium and RV radii of every slice for the ED (``systole=False``) or ES frame."""
    t = anatomy["t"]

    def radii(r_lv_base: float, thickness: float) -> tuple[np.ndarray, np.ndarray]:
        r_lv = r_lv_base * _profile(t, anatomy["lv_apex"], 2.5)
        r_lv = np.where(r_lv >= 1.0, r_lv, 0.0)
        r_epi = np.where(r_lv > 0, r_lv + thickness, 0.0)
        first_empty = np.flatnonzero(r_lv == 0)
        if first_empty.size:  # solid apical cap on the first slice past the LV apex
            r_epi[first_empty[0]] = 1.2 * thickness
        return r_lv, r_epi

    r_lv_ed, r_epi_ed = radii(anatomy["r_lv"], anatomy["thickness"])
    if systole:  # smaller cavity, thicker wall; the RV free wall moves in, the septum moves away
        r_lv, r_epi = radii(anatomy["r_lv"] * anatomy["es_lv"], anatomy["thickness"] * anatomy["es_thickness"])
    else:
        r_lv, r_epi = r_lv_ed, r_epi_ed
    s = _profile(t, anatomy["rv_apex"], 3.0) * (anatomy["es_rv"] if systole else 1.0)
    rv_axes = np.stack([anatomy["rv_along"] * r_epi_ed * s, anatomy["rv_across"] * r_epi_ed * s], axis=1)
    rv_axes[r_lv == 0] = 0.0
    return _Heart(
        centre=anatomy["centre"],
        theta=anatomy["theta"],
        ellipticity=anatomy["ellipticity"],
        r_lv=r_lv,
        r_epi=r_epi,
        phi_rv=anatomy["phi_rv"],
        rv_offset=0.5 * r_epi_ed,
        rv_axes=rv_axes,
    )


def _lv_radius(heart: _Heart, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Elliptic radius ``rho`` (mm along the major axis) of offsets ``dx, dy`` (mm) from the LV centre."""
    u = dx * np.cos(heart.theta) + dy * np.sin(heart.theta)
    v = -dx * np.sin(heart.theta) + dy * np.cos(heart.theta)
    return np.sqrt(u**2 + (v / heart.ellipticity) ** 2)


def _in_rv(heart: _Heart, dx: np.ndarray, dy: np.ndarray, z: np.ndarray | int) -> np.ndarray:
    """Whether offsets (mm) from the LV centre of slice(s) ``z`` lie in the RV crescent."""
    p = dx * np.cos(heart.phi_rv) + dy * np.sin(heart.phi_rv)
    q = -dx * np.sin(heart.phi_rv) + dy * np.cos(heart.phi_rv)
    along, across = np.maximum(heart.rv_axes[z, 0], 1e-6), np.maximum(heart.rv_axes[z, 1], 1e-6)
    inside = ((p - heart.rv_offset[z]) / along) ** 2 + (q / across) ** 2 < 1.0
    return inside & (heart.rv_axes[z, 0] > 0) & (_lv_radius(heart, dx, dy) >= heart.r_epi[z])


def _labels(heart: _Heart, shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """Label volume ``(X, Y, Z)`` uint8 of one frame."""
    nz = heart.r_lv.size
    x, y = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    dx = (x[..., None] - heart.centre[:, 0]) * spacing[0]
    dy = (y[..., None] - heart.centre[:, 1]) * spacing[1]
    rho = _lv_radius(heart, dx, dy)
    labels = np.zeros((*shape, nz), np.uint8)
    labels[_in_rv(heart, dx, dy, np.arange(nz))] = RV
    labels[rho < heart.r_epi] = MYO
    labels[rho < heart.r_lv] = LV
    return labels


def _ellipse(x, y, centre, axes, angle=0.0) -> np.ndarray:
    """Normalised elliptic radius (< 1 inside) on a voxel grid."""
    u = (x - centre[0]) * np.cos(angle) + (y - centre[1]) * np.sin(angle)
    v = -(x - centre[0]) * np.sin(angle) + (y - centre[1]) * np.cos(angle)
    return np.sqrt((u / axes[0]) ** 2 + (v / axes[1]) ** 2)


def _background(
    rng: np.random.Generator, shape: Sequence[int], nz: int, anatomy: dict, blood: float, spacing: Sequence[float]
) -> np.ndarray:
    """Textured thorax ``(X, Y, Z)``: air, body, chest-wall ring, lungs, liver, aorta and blobs."""
    nx, ny = shape
    x, y = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float), indexing="ij")
    x, y = np.repeat(x[..., None], nz, axis=2), np.repeat(y[..., None], nz, axis=2)
    t = anatomy["t"][None, None]
    body_centre = np.array([nx, ny]) / 2 + rng.uniform(-0.03, 0.03, 2) * np.array([nx, ny])
    body_axes = np.array([rng.uniform(0.44, 0.49) * nx, rng.uniform(0.38, 0.45) * ny])
    body = _ellipse(x, y, body_centre, body_axes)
    wall = rng.uniform(0.05, 0.08)
    image = np.full((nx, ny, nz), rng.uniform(0.0, 0.04))
    image[body < 1.0] = rng.uniform(0.45, 0.55)  # chest-wall fat ring
    image[body < 1.0 - wall] = rng.uniform(0.18, 0.28)  # soft tissue
    heart_centre = anatomy["centre"].mean(axis=0)
    side = np.array([np.cos(anatomy["phi_rv"] + np.pi / 2), np.sin(anatomy["phi_rv"] + np.pi / 2)])
    for sign in (-1.0, 1.0):  # lungs either side of the heart, smaller towards the apex
        lung_centre = heart_centre + sign * side * rng.uniform(0.26, 0.32) * min(nx, ny)
        shrink = 1.0 - 0.3 * t
        lung_axes = (rng.uniform(0.12, 0.17) * nx * shrink, rng.uniform(0.2, 0.26) * ny * shrink)
        lung = _ellipse(x, y, lung_centre, lung_axes, rng.uniform(-0.4, 0.4)) < 1.0
        image[lung & (body < 1.0 - wall)] = rng.uniform(0.03, 0.09)
    towards_apex = np.array([np.cos(anatomy["phi_rv"] - 2.0), np.sin(anatomy["phi_rv"] - 2.0)])
    liver_centre = heart_centre + towards_apex * 0.33 * min(nx, ny)
    grow = 0.3 + 0.9 * t
    liver = _ellipse(x, y, liver_centre, (0.2 * nx * grow, 0.14 * ny * grow), rng.uniform(0, np.pi))
    image[(liver < 1.0) & (body < 1.0 - wall)] = rng.uniform(0.3, 0.42)
    for _ in range(rng.integers(3, 7)):  # smooth random blobs (vessels, fat, partial volume)
        centre = rng.uniform(0.15, 0.85, 2) * np.array([nx, ny])
        sigma = rng.uniform(0.03, 0.1) * min(nx, ny)
        image += rng.uniform(-0.1, 0.15) * np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))
    # descending aorta: as bright as the ventricles, beside the LV free wall (away from the RV)
    angle = anatomy["phi_rv"] + np.pi + rng.uniform(-0.6, 0.6)
    aorta_radius = rng.uniform(0.035, 0.05) * min(nx, ny)
    r_epi = (anatomy["r_lv"] + anatomy["thickness"]) / min(spacing[:2])
    aorta_centre = heart_centre + np.array([np.cos(angle), np.sin(angle)]) * (r_epi + aorta_radius + rng.uniform(2, 4))
    image[_ellipse(x, y, aorta_centre, (aorta_radius, aorta_radius)) < 1.0] = blood * rng.uniform(0.97, 1.05)
    return image


def _bias_field(rng: np.random.Generator, shape: Sequence[int], nz: int) -> np.ndarray:
    """Smooth multiplicative field ``exp(sum_k c_k b_k)`` over low-order polynomials ``b_k``, mean 1."""
    x, y, z = np.meshgrid(
        np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), np.linspace(-1, 1, nz), indexing="ij"
    )
    basis = np.stack([x, y, x * y, x**2 - 0.5, y**2 - 0.5, 0.3 * z])
    coefficients = rng.normal(0.0, 0.1, size=len(basis))
    field = np.exp(np.tensordot(coefficients, basis, axes=1))
    return field / field.mean()


def _image(
    rng: np.random.Generator,
    labels: np.ndarray,
    heart: _Heart,
    background: np.ndarray,
    bias: np.ndarray,
    intensities: dict,
    spacing: Sequence[float],
    noise: float,
) -> np.ndarray:
    """Image ``(X, Y, Z)`` float32 in ``[0, 1]`` of one frame."""
    image = background.copy()
    image[labels == MYO] = intensities["myo"]
    image[labels == RV] = intensities["rv"]
    image[labels == LV] = intensities["lv"]
    # papillary muscles: dark dots inside the LV label on the larger slices
    x, y = np.meshgrid(np.arange(labels.shape[0], dtype=float), np.arange(labels.shape[1], dtype=float), indexing="ij")
    for angle in intensities["papillary"]:
        direction = np.array([np.cos(angle), np.sin(angle)])
        centre = heart.centre + direction[None] * (0.6 * heart.r_lv)[:, None] / np.array(spacing[:2])[None]
        radius = 0.18 * heart.r_lv / spacing[0]
        inside = (x[..., None] - centre[:, 0]) ** 2 + (y[..., None] - centre[:, 1]) ** 2 < radius**2
        image[inside & (labels == LV) & (radius >= 1.0)] = intensities["myo"] + 0.05
    image = ndimage.gaussian_filter(image, sigma=(0.6, 0.6, 0.0))  # partial volume
    image = image * bias + rng.normal(0.0, noise, size=image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _rasterise(points: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Voxel indices ``(i, j)`` hit by a densely sampled curve ``points`` ``(N, 2)`` (voxel units)."""
    index = np.rint(points).astype(int)
    keep = (index[:, 0] >= 0) & (index[:, 0] < shape[0]) & (index[:, 1] >= 0) & (index[:, 1] < shape[1])
    index = np.unique(index[keep], axis=0)
    return index[:, 0], index[:, 1]


def _wobble(rng: np.random.Generator, s: np.ndarray, amplitude: float) -> np.ndarray:
    """Smooth hand tremor: a random low-frequency sinusoid of the curve parameter ``s`` in ``[0, 1]``."""
    return amplitude * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * s + rng.uniform(0, 2 * np.pi))


def _to_voxels(heart: _Heart, z: int, dx: np.ndarray, dy: np.ndarray, spacing) -> np.ndarray:
    return np.stack([heart.centre[z, 0] + dx / spacing[0], heart.centre[z, 1] + dy / spacing[1]], axis=1)


def _from_lv_frame(heart: _Heart, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (mm) of points given in the rotated frame of the LV ellipse."""
    c, s = np.cos(heart.theta), np.sin(heart.theta)
    return u * c - v * s, u * s + v * c


def _strokes(rng: np.random.Generator, heart: _Heart, z: int, spacing: Sequence[float]) -> dict[int, np.ndarray]:
    """Stroke centre-lines (voxel coordinates) of one slice, keyed by the class they are meant for."""
    s = np.linspace(0.0, 1.0, _CURVE_SAMPLES)
    strokes: dict[int, list[np.ndarray]] = {BACKGROUND: [], RV: [], MYO: [], LV: []}
    r_lv, r_epi, e = heart.r_lv[z], heart.r_epi[z], heart.ellipticity
    if r_epi == 0:
        return {}
    thickness = r_epi - r_lv
    if r_lv > 0 and rng.random() < 0.95:  # myocardium: arc along the ring's mid-line
        start, span = rng.uniform(0, 2 * np.pi), rng.uniform(0.45, 0.85) * 2 * np.pi
        angle = start + span * s
        rho = r_lv + thickness / 2 + _wobble(rng, s, 0.2 * thickness)
        dx, dy = _from_lv_frame(heart, rho * np.cos(angle), e * rho * np.sin(angle))
        strokes[MYO].append(_to_voxels(heart, z, dx, dy, spacing))
    # short curve in the LV cavity, or in the solid apical cap of myocardium
    for cls, radius in ((LV, r_lv), (MYO, r_epi if r_lv == 0 else 0.0)):
        if radius > 0 and rng.random() < 0.9:
            length = rng.uniform(0.7, 1.1) * radius
            along = (s - 0.5) * length
            bend = rng.uniform(-0.6, 0.6) * (along**2 - (length / 2) ** 2) / radius
            across = rng.uniform(-0.15, 0.15) * radius + bend
            beta = rng.uniform(0, np.pi)
            u = along * np.cos(beta) - across * np.sin(beta)
            v = along * np.sin(beta) + across * np.cos(beta)
            strokes[cls].append(_to_voxels(heart, z, *_from_lv_frame(heart, u, e * v), spacing))
    if heart.rv_axes[z, 0] > 0 and rng.random() < 0.9:  # RV: along the crescent's mid-line
        along = np.linspace(-0.5 * r_epi, heart.rv_offset[z] + heart.rv_axes[z, 0], 200)
        across = np.linspace(-heart.rv_axes[z, 1], heart.rv_axes[z, 1], 120)
        p, q = np.meshgrid(along, across, indexing="ij")
        c, si = np.cos(heart.phi_rv), np.sin(heart.phi_rv)
        member = _in_rv(heart, p * c - q * si, p * si + q * c, z)
        columns = member.any(axis=0)
        if columns.sum() >= 3:
            middle = (p * member).sum(axis=0)[columns] / member.sum(axis=0)[columns]
            q_rows = across[columns]
            keep = rng.uniform(0.4, 0.8)
            first = rng.integers(0, max(1, int(len(q_rows) * (1 - keep))) + 1)
            last = first + max(3, int(len(q_rows) * keep))
            middle, q_rows = middle[first:last], q_rows[first:last]
            fine = np.linspace(0, 1, _CURVE_SAMPLES)
            coarse = np.linspace(0, 1, len(q_rows))
            middle = np.interp(fine, coarse, middle) + _wobble(rng, fine, 0.5 * spacing[0])
            q_rows = np.interp(fine, coarse, q_rows)
            strokes[RV].append(_to_voxels(heart, z, middle * c - q_rows * si, middle * si + q_rows * c, spacing))
    outer = max(r_epi, heart.rv_offset[z] + heart.rv_axes[z, 0], heart.rv_axes[z, 1])
    for _ in range(rng.integers(2, 5)):  # background: arcs around the heart
        start, span = rng.uniform(0, 2 * np.pi), rng.uniform(0.12, 0.3) * 2 * np.pi
        angle = start + span * s
        radius = outer + rng.uniform(4.0, 12.0) * spacing[0] + _wobble(rng, s, spacing[0])
        strokes[BACKGROUND].append(_to_voxels(heart, z, radius * np.cos(angle), radius * np.sin(angle), spacing))
    return {cls: np.concatenate(curves) for cls, curves in strokes.items() if curves}


def _scribbles(
    rng: np.random.Generator, labels: np.ndarray, heart: _Heart, spacing: Sequence[float], unlabelled: int
) -> np.ndarray:
    """Scribble volume ``(X, Y, Z)`` uint8: class index on the strokes, ``unlabelled`` elsewhere."""
    nz = labels.shape[2]
    scribbles = np.full(labels.shape, unlabelled, np.uint8)
    # background strokes keep two voxels away from the heart, as an annotator would
    heart_zone = ndimage.binary_dilation(labels > 0, structure=np.ones((3, 3, 1), bool), iterations=2)
    empty = rng.choice(nz, size=max(1, int(round(EMPTY_SLICE_FRACTION * nz))), replace=False)
    for z in range(nz):
        if z in empty:
            continue
        for cls, points in _strokes(rng, heart, z, spacing).items():
            i, j = _rasterise(points, labels.shape[:2])
            hit = labels[i, j, z] == cls
            if cls == BACKGROUND:
                hit &= ~heart_zone[i, j, z]
            scribbles[i[hit], j[hit], z] = cls
    return scribbles


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = nib.Nifti1Image(array, affine)
    image.header.set_data_dtype(array.dtype)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))


def make_cardiac_phantoms(
    output_dir: str | Path,
    num_patients: int = 8,
    seed: int = 0,
    shape: Sequence[int] = (96, 96),
    num_slices: Sequence[int] = (6, 10),
    spacing: Sequence[float] = (1.5, 1.5, 10.0),
    with_scribbles: bool = True,
    scribble_unlabelled: int = 4,
    noise: float = 0.05,
) -> Path:
    """Write synthetic cardiac cine phantoms in the raw ACDC layout.

    Files per patient (``NNN`` from 001): ``patientNNN_frame01.nii.gz`` (ED image),
    ``_frame01_gt.nii.gz`` (uint8 labels), ``_frame01_scribble.nii.gz`` (uint8, with
    ``with_scribbles``), the same for the ES frame (``frameYY``, YY in 8-15), a
    ``patientNNN_4d.nii.gz`` stack of the two images and an ``Info.cfg``. All volumes of a patient
    share the affine ``diag(spacing)`` with a random, non-zero origin.

    Args:
        output_dir: dataset folder; ``training/`` is created inside.
        num_patients: number of patients.
        seed: patient ``k`` is drawn from ``numpy.random.default_rng([seed, k])``.
        shape: in-plane size ``(X, Y)`` (each >= 32).
        num_slices: ``(min, max)`` number of short-axis slices ``Z`` per patient (inclusive).
        spacing: voxel size in mm ``(x, y, z)``.
        with_scribbles: also write the scribble files.
        scribble_unlabelled: value of the non-annotated scribble voxels (uint8, not 0-3).
        noise: standard deviation of the additive Gaussian noise (intensities in ``[0, 1]``).

    Returns:
        ``Path(output_dir)``, ready for :func:`wss_monai.data.acdc.find_acdc_cases`.

    Raises:
        ValueError: an argument out of range (the message names it and the value received).
    """
    _validate(num_patients, seed, shape, num_slices, spacing, scribble_unlabelled, noise)
    shape = (int(shape[0]), int(shape[1]))
    root = Path(output_dir)
    for index in range(int(num_patients)):
        rng = np.random.default_rng([int(seed), index])
        patient = f"patient{index + 1:03d}"
        folder = root / "training" / patient
        folder.mkdir(parents=True, exist_ok=True)
        nz = int(rng.integers(num_slices[0], num_slices[1] + 1))
        anatomy = _draw_heart(rng, shape, nz, spacing)
        blood = rng.uniform(0.7, 0.85)
        intensities = {
            "lv": blood,
            "rv": blood + rng.uniform(-0.05, 0.05),
            "myo": rng.uniform(0.22, 0.35),
            "papillary": rng.uniform(0, 2 * np.pi, size=2),
        }
        background = _background(rng, shape, nz, anatomy, blood, spacing)
        bias = _bias_field(rng, shape, nz)
        origin = np.round(-np.array([shape[0], shape[1], nz]) * np.array(spacing) / 2 + rng.uniform(-30.0, 30.0, 3), 3)
        affine = np.diag([*map(float, spacing), 1.0])
        affine[:3, 3] = origin
        es_frame = int(rng.integers(8, 16))
        images = []
        for frame, systole in ((1, False), (es_frame, True)):
            heart = _frame_geometry(anatomy, systole)
            labels = _labels(heart, shape, spacing)
            image = _image(rng, labels, heart, background, bias, intensities, spacing, noise)
            stem = folder / f"{patient}_frame{frame:02d}"
            _save(image, affine, stem.with_name(stem.name + ".nii.gz"))
            _save(labels, affine, stem.with_name(stem.name + "_gt.nii.gz"))
            if with_scribbles:
                scribbles = _scribbles(rng, labels, heart, spacing, scribble_unlabelled)
                _save(scribbles, affine, stem.with_name(stem.name + "_scribble.nii.gz"))
            images.append(image)
        _save(np.stack(images, axis=-1), affine, folder / f"{patient}_4d.nii.gz")
        group = rng.choice(["NOR", "MINF", "DCM", "HCM", "RV"])
        (folder / "Info.cfg").write_text(
            f"ED: 1\nES: {es_frame}\nGroup: {group}\nHeight: {rng.uniform(150, 195):.1f}\n"
            f"NbFrame: {es_frame + int(rng.integers(10, 20))}\nWeight: {rng.uniform(50, 110):.1f}\n"
        )
    logger.info("wrote %d phantom patients to %s", num_patients, root / "training")
    return root


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: ``python -m wss_monai.data.phantoms --output_dir DIR [--num_patients N]``."""
    parser = argparse.ArgumentParser(prog="python -m wss_monai.data.phantoms", description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_patients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs="+", default=[96], help="in-plane size: X (square) or X Y")
    args = parser.parse_args(argv)
    if len(args.size) not in (1, 2):
        parser.error(f"--size takes one or two values, not {len(args.size)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    shape = (args.size[0], args.size[-1])
    return make_cardiac_phantoms(args.output_dir, num_patients=args.num_patients, seed=args.seed, shape=shape)


if __name__ == "__main__":
    main()
