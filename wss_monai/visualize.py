"""PNG overlays of label maps on an image slice, for a person to look at."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["best_slice", "save_overlay"]

DEFAULT_COLORS = (
    (0.0, 0.0, 0.0),
    (0.95, 0.25, 0.2),
    (0.2, 0.8, 0.3),
    (0.25, 0.5, 1.0),
    (1.0, 0.85, 0.1),
    (0.8, 0.3, 0.9),
)


def best_slice(label: np.ndarray) -> int:
    """Index of the slice (last axis) with the most foreground voxels of ``label`` ``(H, W, D)``."""
    label = np.asarray(label)
    if label.ndim != 3:
        raise ValueError(f"label must be (H, W, D), got {label.shape}")
    return int(np.argmax((label > 0).reshape(-1, label.shape[-1]).sum(0)))


def save_overlay(
    image: np.ndarray,
    panels: Mapping[str, np.ndarray],
    path: str | Path,
    slice_index: int | None = None,
    class_names: Sequence[str] | None = None,
    weak_panels: Sequence[str] = (),
    unlabelled: int = -1,
    alpha: float = 0.6,
) -> Path:
    """Writes one PNG: the image slice, then each label map of ``panels`` over it.

    Args:
        image: ``(H, W, D)`` intensities.
        panels: title → class map ``(H, W, D)``; background (0) is left transparent.
        weak_panels: titles of panels holding weak labels: there the background class is drawn
            (in yellow) and the ``unlabelled`` value is left transparent.
        path: output PNG.
        slice_index: slice along the last axis; ``None`` takes the slice with the most foreground in
            the last panel (usually the ground truth).
        class_names: legend entries, index 0 first.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    image = np.asarray(image, dtype=float)
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, D), got {image.shape}")
    for title, labels in panels.items():
        if np.asarray(labels).shape != image.shape:
            raise ValueError(f"panel {title!r} has shape {np.asarray(labels).shape}, image {image.shape}")
    if slice_index is None:
        slice_index = best_slice(np.asarray(list(panels.values())[-1])) if panels else image.shape[-1] // 2
    if not 0 <= slice_index < image.shape[-1]:
        raise ValueError(f"slice_index {slice_index} outside [0, {image.shape[-1] - 1}]")
    picture = image[..., slice_index].T
    lo, hi = np.percentile(picture, [1, 99])
    picture = np.clip((picture - lo) / max(hi - lo, 1e-8), 0, 1)
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(3.2 * (1 + len(panels)), 3.6), squeeze=False)
    axes = axes[0]
    axes[0].imshow(picture, cmap="gray", origin="lower")
    axes[0].set_title(f"image (slice {slice_index})")
    for ax, (title, labels) in zip(axes[1:], panels.items()):
        labels = np.asarray(labels)[..., slice_index].T.astype(int)
        rgba = np.zeros((*labels.shape, 4))
        for k in range(1, len(DEFAULT_COLORS)):
            rgba[labels == k] = (*DEFAULT_COLORS[k], alpha)
        if title in weak_panels:
            rgba[labels == 0] = (1.0, 1.0, 0.0, alpha)
            rgba[labels == unlabelled] = 0.0
        ax.imshow(picture, cmap="gray", origin="lower")
        ax.imshow(rgba, origin="lower", interpolation="nearest")
        ax.set_title(title)
    for ax in axes:
        ax.axis("off")
    if class_names:
        handles = [
            Patch(color=DEFAULT_COLORS[k], label=class_names[k])
            for k in range(1, min(len(class_names), len(DEFAULT_COLORS)))
        ]
        if weak_panels:
            handles.append(Patch(color=(1.0, 1.0, 0.0), label=f"{class_names[0]} (weak label)"))
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
