"""Training from the datastore: annotators' scribbles, boxes and full labels train the served bundle.

A ``/train/<model>`` request turns the datastore's ``scribbles``, ``boxes`` and ``final`` labels into a
bundle datalist (:func:`wss_monai.label.datalist.make_label_datalist`) for one recipe, runs the bundle's
training workflow on it in a subprocess (:func:`wss_monai.label.training.label_training_command`:
partial CE on the scribbles, or the box recipe on the boxes, with a CRF loss, fine-tuning from the
served weights) and, when it succeeds, makes the new run the served one (the inference tasks re-read
it). Request parameters: ``max_epochs``, ``spatial_size``, ``batch_size``, ``learning_rate``,
``crf_weight`` (bundle overrides), ``regulariser`` (``dense_crf``, ``grid_crf``, ``none``),
``supervision`` (``auto``: the recipe that covers more images, ``scribbles`` or ``boxes``), ``box_loss``
and ``box_epsilon`` (box runs only), and the scribble convention's parameters.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from wss_monai.label.app.errors import unprocessable
from wss_monai.label.datalist import make_label_datalist
from wss_monai.label.scribbles import ScribbleConvention
from wss_monai.label.training import REGULARISERS, label_training_command

__all__ = ["BOX_OVERRIDES", "BUNDLE_OVERRIDES", "DatastoreTrainTask"]

logger = logging.getLogger(__name__)

BUNDLE_OVERRIDES = {"max_epochs": int, "spatial_size": int, "batch_size": int, "learning_rate": float,
                    "crf_weight": float}  # fmt: skip
"""Request parameters passed to the bundle run, with their types."""
BOX_OVERRIDES = {"box_loss": str, "box_epsilon": float}
"""Request parameters passed to a run of the box recipe only (``configs/supervision/boxes.yaml``)."""


class DatastoreTrainTask(TrainTask):
    """Trains the bundle on the datastore's annotations (see the module).

    Args:
        bundle: the served bundle.
        work_dir: where each training writes ``train_<time>/`` (converted scribbles, datalist, the run).
        num_classes, unlabelled: the bundle's ``num_classes`` and ``scribble_unlabelled``.
        convention: the scribble convention of a request.
        current_run: returns the served run folder and its checkpoint (the weights to start from).
        on_trained: called with the new run folder when a training succeeds.
        defaults: default request parameters (``max_epochs``, ``regulariser``, ``supervision``, ...).
        class_names: the bundle's class names (box JSON may name classes); ``None``: indices only.
    """

    def __init__(self, bundle: str, work_dir: str | Path, num_classes: int, unlabelled: int,
                 convention: Callable[[dict], ScribbleConvention], current_run: Callable[[], tuple[Path, Path]],
                 on_trained: Callable[[Path], None], defaults: dict | None = None,
                 class_names: Sequence[str] | None = None):  # fmt: skip
        super().__init__(f"Train the {bundle} bundle on the datastore's scribbles, boxes and full labels")
        self.bundle, self.work_dir = bundle, Path(work_dir)
        self.num_classes, self.unlabelled, self.class_names = num_classes, unlabelled, class_names
        self.convention, self.current_run, self.on_trained = convention, current_run, on_trained
        self._config = {"max_epochs": 2, "regulariser": "dense_crf", "supervision": "auto", **(defaults or {})}
        self._last: dict = {}

    def config(self) -> dict:
        return dict(self._config)

    def stats(self) -> dict:
        return dict(self._last)

    @staticmethod
    def records(datastore: Datastore) -> list[dict]:
        """``[{"id", "image", "<tag>": label path, ...}]`` of every image of the datastore."""
        records = []
        for image_id in datastore.list_images():
            record = {"id": image_id, "image": datastore.get_image_uri(image_id)}
            for tag, label_id in datastore.get_labels_by_image_id(image_id).items():
                record[tag] = datastore.get_label_uri(label_id, tag)
            records.append(record)
        return records

    @staticmethod
    def _overrides(options: dict, allowed: dict) -> dict:
        """The typed bundle overrides among ``options`` (``allowed``: ``{key: type}``); 422 for a bad value."""
        overrides = {}
        for key, kind in allowed.items():
            if key in options:
                try:
                    overrides[key] = kind(options[key])
                except (TypeError, ValueError):
                    raise unprocessable(f"{key} must be a {kind.__name__}, got {options[key]!r}") from None
        return overrides

    def __call__(self, request: dict, datastore: Datastore) -> dict:
        options = {**self._config, **request}
        if options["regulariser"] not in REGULARISERS:
            raise unprocessable(f"regulariser must be one of {REGULARISERS}, got {options['regulariser']!r}")
        overrides = self._overrides(options, BUNDLE_OVERRIDES)
        box_overrides = self._overrides(options, BOX_OVERRIDES)
        folder = self.work_dir / time.strftime("train_%Y%m%d_%H%M%S")
        try:
            datalist = make_label_datalist(self.records(datastore), folder / "annotations", self.convention(options),
                                           self.num_classes, self.unlabelled, folder / "datalist.json",
                                           options["supervision"], self.class_names)  # fmt: skip
        except ValueError as error:
            raise unprocessable(str(error)) from error
        recipe = datalist["supervision"]
        if recipe == "boxes":
            overrides.update(box_overrides)
        elif box_overrides:
            logger.warning("%s apply to box runs only; this run trains from scribbles", sorted(box_overrides))
        _, checkpoint = self.current_run()
        run_dir = folder / "run"
        command = label_training_command(self.bundle, folder / "datalist.json", run_dir, options["regulariser"],
                                         initial_weights=checkpoint, overrides=overrides,
                                         supervision=recipe)  # fmt: skip
        start = time.perf_counter()
        logger.info("training on %d images: %s", len(datalist["training"]), " ".join(command))
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        with open(folder / "training.log", "w") as log:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        seconds = round(time.perf_counter() - start, 1)
        self._last = {"run_dir": str(run_dir), "seconds": seconds, "images": len(datalist["training"]),
                      "recipe": recipe, "returncode": result.returncode,
                      "log": str(folder / "training.log")}  # fmt: skip
        if result.returncode:
            tail = "".join((folder / "training.log").read_text().splitlines(keepends=True)[-20:])
            raise RuntimeError(f"training failed (exit {result.returncode}); end of {folder / 'training.log'}:\n{tail}")
        self.on_trained(run_dir)
        logger.info("trained in %.1f s; serving %s", seconds, run_dir)
        return {**self._last, "supervision": {c["patient"]: c["supervision"] for c in datalist["training"]},
                "left_out": datalist["left_out"]}  # fmt: skip
