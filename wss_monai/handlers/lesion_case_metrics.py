"""Per-case lesion metrics of an evaluator (WMH challenge style), written to CSV and a JSON summary."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from ignite.engine import Engine, Events
from monai.data import MetaTensor

from wss_monai.handlers.case_metrics import _class_map, summarise_rows
from wss_monai.metrics.lesion import lesion_metrics
from wss_monai.metrics.volume import spacing_from_affine

__all__ = ["LESION_COLUMNS", "LesionMetricsWriter"]

LESION_COLUMNS = ("dice", "hd95", "avd", "recall", "precision", "f1", "n_gt_lesions", "n_pred_lesions")
"""Columns of ``metrics.csv`` after ``case`` (HD95 in mm, AVD in %)."""


class LesionMetricsWriter:
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
    """

    def __init__(
        self,
        output_dir: str | None,
        lesion_class: int = 1,
        ignore_value: int | None = None,
        case_keys=("case", "patient"),
        pred_key: str = "pred",
        label_key: str = "label",
        name: str = "wss_monai.lesion_metrics",
    ) -> None:
        if ignore_value is not None and ignore_value == lesion_class:
            raise ValueError(f"ignore_value must differ from lesion_class, got {ignore_value} for both")
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.lesion_class, self.ignore_value = int(lesion_class), ignore_value
        self.case_keys, self.pred_key, self.label_key = list(case_keys), pred_key, label_key
        self.logger = logging.getLogger(name)
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _case_name(self, item, label, index: int) -> str:
        for key in self.case_keys:
            if isinstance(item, dict) and key in item:
                value = item[key]
                return str(value[0] if isinstance(value, (list, tuple)) else value)
        if isinstance(label, MetaTensor) and "filename_or_obj" in label.meta:
            return Path(str(label.meta["filename_or_obj"])).name.split(".")[0]
        return f"case{index:04d}"

    def _collect(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [{}] * len(outputs)
        for item, output in zip(batch, outputs):
            label = output[self.label_key]
            if not isinstance(label, MetaTensor):
                raise TypeError("LesionMetricsWriter needs the label as a MetaTensor carrying its affine (spacing)")
            spacing = spacing_from_affine(label.affine)
            lab, pred = _class_map(label).numpy(), _class_map(output[self.pred_key]).numpy()
            if pred.shape != lab.shape:
                raise ValueError(
                    f"prediction {pred.shape} and label {lab.shape} differ: invert the preprocessing first"
                )
            ignore = None if self.ignore_value is None else lab == self.ignore_value
            metrics = lesion_metrics(
                pred == self.lesion_class, lab == self.lesion_class, spacing=spacing[: lab.ndim], ignore_mask=ignore
            )
            row = {"case": self._case_name(item, label, len(self.rows))}
            row.update({k: metrics[k] for k in LESION_COLUMNS})
            self.rows.append(row)

    def _write(self, engine: Engine) -> None:
        if not self.rows:
            self.logger.warning("no case was evaluated")
            return
        summary = summarise_rows(self.rows, LESION_COLUMNS)
        for name in LESION_COLUMNS:
            engine.state.metrics[f"lesion_{name}"] = summary[name]["mean"]
        lines = [f"{'metric':<14}{'mean':>10}{'std':>10}{'n':>5}"]
        lines += [
            f"{n:<14}{summary[n]['mean']:>10.4f}{summary[n]['std']:>10.4f}{summary[n]['count']:>5d}"
            for n in LESION_COLUMNS
        ]
        self.logger.info(
            "%d cases, mean lesion Dice %.4f\n%s", len(self.rows), summary["dice"]["mean"], "\n".join(lines)
        )
        if self.output_dir is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["case", *LESION_COLUMNS])
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        mean = {k: summary[k]["mean"] for k in LESION_COLUMNS}
        payload = {
            "num_cases": len(self.rows),
            "mean_dice": mean["dice"],
            "mean_hd95": mean["hd95"],
            "ignore_value": self.ignore_value,
            "metrics": summary,
        }
        (self.output_dir / "summary.json").write_text(json.dumps(payload, indent=2, allow_nan=True))
        self.logger.info("wrote %s and %s", self.output_dir / "metrics.csv", self.output_dir / "summary.json")
