"""The MONAI Label app: a bundle's trained run served for inference, refinement and training.

Configuration (``monailabel start_server ... --conf key value``):

- ``bundle``: the bundle (default ``acdc``); class names come from its ``metadata.json``.
- ``run_dir``: the trained run served at start (the ``output_dir`` of a ``run training``).
- ``work_dir``: where trainings write (default ``<studies>/.wss_label``); ``served_run.txt`` there names the
  run served now, so a training in a background process hands its weights to the server.
- ``scribbles_convention`` (``painted``), ``scribbles_background``, ``scribbles_unlabelled``: how stored
  scribble values read (:class:`wss_monai.label.scribbles.ScribbleConvention`); each can be set per request.
- ``max_epochs`` (2), ``regulariser`` (``dense_crf``), ``supervision`` (``auto``), ``smoothness`` (2.0): task
  defaults.
- ``device``: ``cpu`` (default) or ``cuda``.

Models: ``segmentation`` (:class:`~wss_monai.label.app.infer.SegmentationTask`), ``refinement``
(:class:`~wss_monai.label.app.infer.RefinementTask`); trainer ``segmentation``
(:class:`~wss_monai.label.app.train.DatastoreTrainTask`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from monai.bundle import ConfigParser
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore

from wss_monai.bundle import bundle_configs
from wss_monai.label.app.datastore import SCRIBBLES_TAG, CheckedDatastore
from wss_monai.label.app.errors import bad_request, not_found, unprocessable
from wss_monai.label.app.infer import RefinementTask, SegmentationTask
from wss_monai.label.app.train import DatastoreTrainTask
from wss_monai.label.predict import Predictor, label_names
from wss_monai.label.scribbles import ScribbleConvention

__all__ = ["SEGMENTATION", "REFINEMENT", "WssLabelApp"]

logger = logging.getLogger(__name__)

SEGMENTATION = "segmentation"
"""The name of the segmentation model and of the trainer."""
REFINEMENT = "refinement"
"""The name of the scribble refinement model."""


def _checkpoint(run_dir: Path) -> Path:
    final = run_dir / "models" / "model_final.pt"
    return final if final.is_file() else run_dir / "models" / "model.pt"


class WssLabelApp(MONAILabelApp):
    """Serves ``conf["run_dir"]`` of ``conf["bundle"]`` (see the module)."""

    def __init__(self, app_dir: str, studies: str, conf: dict):
        conf = dict(conf or {})
        self.bundle = conf.get("bundle", "acdc")
        parser = ConfigParser()
        parser.read_config([str(f) for f in bundle_configs(self.bundle)])
        self.num_classes = int(parser["num_classes"])
        self.class_names = [str(name) for name in parser["class_names"]]
        self.scribble_unlabelled = int(parser.get("scribble_unlabelled", 255))
        self.names = label_names(self.bundle)
        self.work_dir = Path(conf.get("work_dir") or Path(studies) / ".wss_label")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.device = conf.get("device", "cpu")
        self.defaults = {k: conf[k] for k in ("scribbles_convention", "scribbles_background", "scribbles_unlabelled")
                         if k in conf}  # fmt: skip
        if not (self.work_dir / "served_run.txt").is_file():
            if not conf.get("run_dir"):
                raise ValueError("conf run_dir is not set: --conf run_dir <the output_dir of a training run>")
            self.serve(Path(conf["run_dir"]))
        self._predictor: Predictor | None = None
        self.conf_tasks = conf
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="wss-monai",
                         description=f"Weakly supervised {self.bundle} segmentation: scribbles and boxes in the loop",
                         labels=self.names)  # fmt: skip

    # ---- the served run
    def served_run(self) -> tuple[Path, Path]:
        """``(run_dir, checkpoint)`` served now."""
        run_dir = Path((self.work_dir / "served_run.txt").read_text().strip())
        return run_dir, _checkpoint(run_dir)

    def serve(self, run_dir: Path) -> None:
        """Makes ``run_dir`` the served run (written to ``served_run.txt``, read by every process)."""
        if not _checkpoint(Path(run_dir)).is_file():
            raise FileNotFoundError(f"run_dir {str(run_dir)!r} holds no models/model_final.pt or models/model.pt")
        (self.work_dir / "served_run.txt").write_text(str(Path(run_dir).resolve()) + "\n")
        logger.info("serving %s", run_dir)

    def predictor(self) -> Predictor:
        """The :class:`Predictor` of the served run (rebuilt when the served run changes)."""
        run_dir, checkpoint = self.served_run()
        if self._predictor is None or self._predictor.run_dir != run_dir:
            self._predictor = Predictor(self.bundle, run_dir, checkpoint, device=self.device)
        return self._predictor

    def convention(self, params: dict) -> ScribbleConvention:
        """The scribble convention of a request (its parameters over the app's)."""
        options = {**self.defaults, **params}
        name = options.get("scribbles_convention", "painted")
        target = options.get("target")
        if isinstance(target, str) and target in self.names:
            target = self.names[target]
        unlabelled = options.get("scribbles_unlabelled")
        if unlabelled is None and name == "dataset":
            unlabelled = self.scribble_unlabelled
        return ScribbleConvention.preset(name, self.num_classes, unlabelled=unlabelled,
                                         background=options.get("scribbles_background"), target=target)  # fmt: skip

    def stored_scribbles(self, request: dict) -> str | None:
        """The path of the stored scribbles of the request's datastore image, if any."""
        image_id = request.get("image_id")
        if not image_id or image_id not in self.datastore().list_images():
            return None
        label_id = self.datastore().get_labels_by_image_id(image_id).get(SCRIBBLES_TAG)
        return self.datastore().get_label_uri(label_id, SCRIBBLES_TAG) if label_id else None

    # ---- MONAI Label hooks
    def init_datastore(self) -> Datastore:
        return CheckedDatastore(self.studies, self.num_classes, self._checked_convention, self.class_names,
                                extensions=["*.nii.gz", "*.nii"], auto_reload=False)  # fmt: skip

    def _checked_convention(self, params: dict) -> ScribbleConvention:
        try:
            return self.convention(params)
        except ValueError as error:
            raise unprocessable(f"scribble convention: {error}") from error

    def init_infers(self) -> dict:
        description = f"{self.bundle} bundle's network on a 3D volume"
        return {
            SEGMENTATION: SegmentationTask(self.predictor, self.names, description),
            REFINEMENT: RefinementTask(self.predictor, self.names, "the network's probabilities refined by new "
                                       "scribbles: 3D graph cut / alpha-expansion, scribbles hard",
                                       self._checked_convention, self.stored_scribbles,
                                       {k: self.conf_tasks[k] for k in ("smoothness",) if k in self.conf_tasks}),
        }  # fmt: skip

    def init_trainers(self) -> dict:
        defaults = {k: self.conf_tasks[k] for k in ("max_epochs", "regulariser", "supervision") if k in self.conf_tasks}
        return {
            SEGMENTATION: DatastoreTrainTask(self.bundle, self.work_dir, self.num_classes, self.scribble_unlabelled,
                                             self._checked_convention, self.served_run, self.serve, defaults,
                                             self.class_names)
        }  # fmt: skip

    def infer(self, request: dict, datastore=None) -> dict:
        """MONAI Label's ``infer`` with 404 for an unknown model or image, 400 without an image."""
        model = request.get("model")
        if model not in self._infers:
            raise not_found(f"no model {model!r}; models: {sorted(self._infers)}")
        image = request.get("image")
        if not image:
            raise bad_request("no image: pass ?image=<datastore id> or upload a file")
        if isinstance(image, str) and not Path(image).exists():
            if image not in (datastore or self.datastore()).list_images():
                raise not_found(f"image {image!r} is not in the datastore")
            request = {**request, "image_id": image}
        return super().infer(request, datastore)

    def train(self, request: dict) -> dict:
        """MONAI Label's ``train`` with 404 for an unknown trainer."""
        if request.get("model") not in self._trainers:
            raise not_found(f"no trainer {request.get('model')!r}; trainers: {sorted(self._trainers)}")
        return super().train(request)
