"""Per-case 3D metrics of an evaluator, written to CSV and a JSON summary."""

from __future__ import annotations

import csv
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from wss_monai.metrics.trimap import trimap_metrics
from wss_monai.metrics.volume import spacing_from_affine, volume_metrics
from wss_monai.utils.atomic import atomic_path, write_text_atomic
from wss_monai.utils.distributed import all_gather_object, is_distributed, is_main_process

__all__ = ["CaseMetricsWriter", "PerCaseMetricsWriter", "summarise_rows"]


def _class_map(x: torch.Tensor) -> torch.Tensor:
    """An integer map ``(H, W, D)`` from ``(1, H, W, D)`` or a one-hot ``(C, H, W, D)``."""
    x = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    return (x.argmax(0) if x.shape[0] > 1 else x[0]).long().cpu()


def summarise_rows(rows: Sequence[dict], metric_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean, std and count of each metric over cases, ignoring NaN (a class absent from both)."""
    summary = {}
    for name in metric_names:
        values = np.array([row[name] for row in rows], dtype=float)
        values = values[~np.isnan(values)]
        summary[name] = {
            "mean": float(values.mean()) if values.size else float("nan"),
            "std": float(values.std()) if values.size else float("nan"),
            "count": int(values.size),
        }
    return summary


class PerCaseMetricsWriter(ABC):
    """Shared machinery of the per-case metric writers of an evaluator.

    Collects one row per case from the evaluator's decollated output (``pred`` and ``label`` in the
    label's own space, class maps ``(1, H, W, D)`` or one-hot ``(C, H, W, D)``; the label a
    :class:`~monai.data.MetaTensor` whose affine gives the spacing), names each case from
    ``case_keys`` of the batch or the label's file name, and when the evaluation ends summarises the
    rows (mean/std/count per metric, NaN left out), logs the table and writes ``metrics.csv`` (one
    row per case) and ``summary.json``.

    Subclasses give :meth:`case_metrics` (the metrics of one case), :meth:`publish` (what goes to
    ``engine.state.metrics`` and ``summary.json``), and the events ``start_event`` / ``end_event``
    that clear and write the rows.

    In a distributed run (``torchrun``, the evaluator's data split by a ``DistributedSampler`` without
    shuffling) the rows of every process are gathered and interleaved (``r0[0], r1[0], …, r0[1], …``),
    which is the dataset order for a sampler that gives rank ``r`` items ``r, r + R, …``; every
    process publishes the same metrics and rank 0 alone writes the files.

    Args:
        output_dir: folder for the CSV and JSON files; ``None`` writes nothing to disk.
        case_keys: batch keys whose values name a case.
        pred_key, label_key: keys of the evaluator output.
        name: logger name.
        trimap_widths: band widths (pixels) of the boundary accuracy and Dice in trimaps
            (:func:`wss_monai.metrics.trimap_metrics`), added as ``trimap_*`` columns; ``()``: none.
    """

    start_event = Events.STARTED
    end_event = Events.COMPLETED
    headline = "foreground"
    """Word of the logged "mean <headline> Dice" line."""

    def __init__(
        self,
        output_dir: str | None,
        case_keys: Sequence[str],
        pred_key: str = "pred",
        label_key: str = "label",
        name: str = "wss_monai.case_metrics",
        trimap_widths: Sequence[int] = (),
    ) -> None:
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.trimap_widths = [int(w) for w in trimap_widths]
        if any(w < 1 for w in self.trimap_widths):
            raise ValueError(f"trimap_widths must be integers >= 1, got {list(trimap_widths)}")
        self.case_keys, self.pred_key, self.label_key = list(case_keys), pred_key, label_key
        self.logger = logging.getLogger(name)
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(self.start_event, lambda e: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(self.end_event, self._write)

    def case_name_from_batch(self, item: dict) -> str | None:
        """The case name from the batch item's ``case_keys`` (all present ones joined by ``_``), or ``None``."""
        parts = [str(item[k]) for k in self.case_keys if isinstance(item, dict) and k in item]
        return "_".join(parts) if parts else None

    def _case_name(self, item: dict, label: torch.Tensor, index: int) -> str:
        name = self.case_name_from_batch(item)
        if name is not None:
            return name
        if isinstance(label, MetaTensor) and "filename_or_obj" in label.meta:
            return Path(str(label.meta["filename_or_obj"])).name.split(".")[0]
        return f"case{index:04d}"

    @abstractmethod
    def case_metrics(self, pred: torch.Tensor, label: torch.Tensor, spacing: Sequence[float]) -> dict[str, float]:
        """Metrics of one case from integer class maps ``pred`` and ``label`` ``(H, W, D)`` and the spacing (mm)."""

    def trimap_case_metrics(self, pred: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
        """The ``trimap_*`` metrics of one case (integer maps ``(H, W, D)``); ``{}`` without ``trimap_widths``."""
        return {}

    @abstractmethod
    def publish(self, engine: Engine, names: list[str], summary: dict[str, dict[str, float]]) -> dict:
        """Puts the summary in ``engine.state.metrics``; returns the ``summary.json`` payload (with ``mean_dice``)."""

    def _collect(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [{}] * len(outputs)
        for item, output in zip(batch, outputs):
            label = output[self.label_key]
            if not isinstance(label, MetaTensor):
                raise TypeError(f"{type(self).__name__} needs the label as a MetaTensor carrying its affine (spacing)")
            spacing = spacing_from_affine(label.affine)
            pred, label_map = _class_map(output[self.pred_key]), _class_map(label)
            metrics = self.case_metrics(pred, label_map, spacing)
            if self.trimap_widths:
                metrics.update(self.trimap_case_metrics(pred, label_map))
            self.rows.append({"case": self._case_name(item, label, len(self.rows)), **metrics})

    def metric_names(self) -> list[str]:
        return [k for k in self.rows[0] if k != "case"] if self.rows else []

    def _gather(self) -> None:
        """Replaces ``rows`` by the rows of every process, interleaved in rank order (no-op in one process)."""
        if not is_distributed():
            return
        parts = all_gather_object(list(self.rows))
        longest = max(len(part) for part in parts)
        self.rows = [part[i] for i in range(longest) for part in parts if i < len(part)]

    def _write(self, engine: Engine) -> None:
        self._gather()
        if not self.rows:
            self.logger.warning("no case was evaluated")
            return
        names = self.metric_names()
        summary = summarise_rows(self.rows, names)
        payload = self.publish(engine, names, summary)
        width = max([14] + [len(n) + 2 for n in names])
        lines = [f"{'metric':<{width}}{'mean':>10}{'std':>10}{'n':>5}"]
        lines += [
            f"{n:<{width}}{summary[n]['mean']:>10.4f}{summary[n]['std']:>10.4f}{summary[n]['count']:>5d}" for n in names
        ]
        self.logger.info(
            "%d cases, mean %s Dice %.4f\n%s", len(self.rows), self.headline, payload["mean_dice"], "\n".join(lines)
        )
        if self.output_dir is None or not is_main_process():
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.output_dir / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["case", *names])
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        write_text_atomic(json.dumps(payload, indent=2, allow_nan=True), self.output_dir / "summary.json")
        self.logger.info("wrote %s and %s", self.output_dir / "metrics.csv", self.output_dir / "summary.json")


class CaseMetricsWriter(PerCaseMetricsWriter):
    """Computes 3D Dice and HD95 (mm, from the label's affine) for each case an evaluator sees.

    Reads the evaluator's decollated output (``pred`` and ``label`` in the label's own space, as
    class maps or one-hot), names each case from ``case_keys`` of the batch (e.g. patient and frame)
    or the label's file name, and at the end of the run writes ``metrics.csv`` (one row per case),
    ``summary.json`` (mean/std per metric, and the mean Dice over foreground classes), logs the table,
    and puts ``mean_dice`` and ``mean_hd95`` in ``engine.state.metrics``.

    Args:
        output_dir: folder for the CSV and JSON files; ``None`` writes nothing to disk.
        class_names: names of the classes, index 0 first (the background is not reported).
        hd95: also compute HD95 (slower than Dice).
        case_keys: batch keys whose values name a case.
        trimap_widths: band widths (pixels) of the per-class boundary accuracy and Dice in trimaps; ``()``: none.
    """

    def __init__(
        self,
        output_dir: str | None,
        class_names: Sequence[str],
        hd95: bool = True,
        case_keys: Sequence[str] = ("patient", "frame"),
        pred_key: str = "pred",
        label_key: str = "label",
        name: str = "wss_monai.case_metrics",
        trimap_widths: Sequence[int] = (),
    ) -> None:
        super().__init__(output_dir, case_keys, pred_key, label_key, name, trimap_widths)
        self.class_names = list(class_names)
        self.hd95 = hd95

    def case_metrics(self, pred: torch.Tensor, label: torch.Tensor, spacing: Sequence[float]) -> dict[str, float]:
        metrics = volume_metrics(pred, label, self.class_names, spacing)
        if not self.hd95:
            metrics = {k: v for k, v in metrics.items() if not k.startswith("hd95")}
        return metrics

    def trimap_case_metrics(self, pred: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
        return trimap_metrics(pred, label, self.class_names, self.trimap_widths)

    def publish(self, engine: Engine, names: list[str], summary: dict[str, dict[str, float]]) -> dict:
        dice_names = [n for n in names if n.startswith("dice_")]
        hd_names = [n for n in names if n.startswith("hd95_")]
        mean_dice = float(np.nanmean([summary[n]["mean"] for n in dice_names]))
        engine.state.metrics["mean_dice"] = mean_dice
        if hd_names:
            engine.state.metrics["mean_hd95"] = float(np.nanmean([summary[n]["mean"] for n in hd_names]))
        for n in names:
            engine.state.metrics[n] = summary[n]["mean"]
        payload = {"num_cases": len(self.rows), "mean_dice": mean_dice, "metrics": summary}
        if hd_names:
            payload["mean_hd95"] = engine.state.metrics["mean_hd95"]
        return payload
