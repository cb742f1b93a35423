"""Per-case lesion metrics of an evaluator (WMH challenge style), written to CSV and a JSON summary."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events

from wss_monai.handlers.case_metrics import PerCaseMetricsWriter
from wss_monai.metrics.lesion import lesion_metrics
from wss_monai.metrics.trimap import trimap_metrics

__all__ = ["LESION_COLUMNS", "LesionMetricsWriter"]

LESION_COLUMNS = ("dice", "hd95", "avd", "recall", "precision", "f1", "n_gt_lesions", "n_pred_lesions")
"""Columns of ``metrics.csv`` after ``case`` (HD95 in mm, AVD in %)."""


class LesionMetricsWriter(PerCaseMetricsWriter):
    """Dice, HD95 (mm), AVD (%), lesion-wise recall, precision and F1 for each case an evaluator sees.

    Metrics of :func:`wss_monai.metrics.lesion.lesion_metrics` (Kuijf et al., IEEE TMI 2019), computed
    in each label's own space (after ``Invertd``) with the spacing of the label's affine. With
    ``ignore_value`` set (WMH: 2, other pathology) the voxels holding it in the label are removed
    from both the prediction and the reference before anything is measured.

    At the end of every evaluator epoch it writes ``metrics.csv`` (one row per case: ``case`` then
    :data:`LESION_COLUMNS`) and ``summary.json`` (mean/std/count per metric, NaN left out), logs
    the table and puts ``lesion_<metric>`` means in ``engine.state.metrics`` (``lesion_dice`` can
    be the key metric of a ``CheckpointSaver``: ``key_metric_name="lesion_dice"``).

    Args:
        output_dir: folder of the CSV and JSON files; ``None`` writes nothing.
        lesion_class: class index of the lesion in the prediction and the label.
        ignore_value: label value to ignore, or ``None``.
        case_keys: batch keys whose values name a case (else the label's file name).
        pred_key, label_key: keys of the evaluator output: class maps ``(1, H, W, D)`` or one-hot.
        trimap_widths: band widths (pixels) of the lesion's boundary accuracy and Dice in trimaps
            (``trimap_*`` columns, the ignored voxels left out of the bands); ``()``: none.
    """

    start_event = Events.EPOCH_STARTED
    end_event = Events.EPOCH_COMPLETED
    headline = "lesion"

    def __init__(
        self,
        output_dir: str | None,
        lesion_class: int = 1,
        ignore_value: int | None = None,
        case_keys=("case", "patient"),
        pred_key: str = "pred",
        label_key: str = "label",
        name: str = "wss_monai.lesion_metrics",
        trimap_widths: Sequence[int] = (),
    ) -> None:
        if ignore_value is not None and ignore_value == lesion_class:
            raise ValueError(f"ignore_value must differ from lesion_class, got {ignore_value} for both")
        super().__init__(output_dir, case_keys, pred_key, label_key, name, trimap_widths)
        self.lesion_class, self.ignore_value = int(lesion_class), ignore_value

    def case_name_from_batch(self, item: dict) -> str | None:
        """The value of the first of ``case_keys`` in the batch item (first element of a list), or ``None``."""
        for key in self.case_keys:
            if isinstance(item, dict) and key in item:
                value = item[key]
                return str(value[0] if isinstance(value, (list, tuple)) else value)
        return None

    def case_metrics(self, pred: torch.Tensor, label: torch.Tensor, spacing: Sequence[float]) -> dict[str, float]:
        lab, pred = label.numpy(), pred.numpy()
        if pred.shape != lab.shape:
            raise ValueError(f"prediction {pred.shape} and label {lab.shape} differ: invert the preprocessing first")
        ignore = None if self.ignore_value is None else lab == self.ignore_value
        metrics = lesion_metrics(
            pred == self.lesion_class, lab == self.lesion_class, spacing=spacing[: lab.ndim], ignore_mask=ignore
        )
        return {k: metrics[k] for k in LESION_COLUMNS}

    def trimap_case_metrics(self, pred: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
        ignore = None if self.ignore_value is None else label == self.ignore_value
        return trimap_metrics(
            pred == self.lesion_class, label == self.lesion_class, ["background", "lesion"], self.trimap_widths, ignore
        )

    def metric_names(self) -> list[str]:
        trimap = [k for k in self.rows[0] if k.startswith("trimap_")] if self.rows else []
        return list(LESION_COLUMNS) + trimap

    def publish(self, engine: Engine, names: list[str], summary: dict[str, dict[str, float]]) -> dict:
        for name in names:
            engine.state.metrics[f"lesion_{name}"] = summary[name]["mean"]
        return {
            "num_cases": len(self.rows),
            "mean_dice": summary["dice"]["mean"],
            "mean_hd95": summary["hd95"]["mean"],
            "ignore_value": self.ignore_value,
            "metrics": summary,
        }
