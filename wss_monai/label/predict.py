"""A trained run of a bundle applied to one 3D volume: class probabilities in the input's own space.

The network, the image normalisation and the inferer are those of the run's recorded config, built by
the bundle's inference configs (``bundle_configs(bundle, kind="inference")``), so the server predicts
exactly what ``run inferring`` writes; the probabilities are brought back to the input's grid by
MONAI's ``Invertd``. The weights are re-read when the checkpoint file changes (a finished training).

Example:
    >>> label_names("acdc")
    {'rv': 1, 'myo': 2, 'lv': 3}
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Invertd, LoadImage

from wss_monai.bundle import bundle_configs
from wss_monai.label.checks import LabelCheckError
from wss_monai.paths import bundle_dir

__all__ = ["Predictor", "label_names"]

logger = logging.getLogger(__name__)


def label_names(bundle: str) -> dict[str, int]:
    """``{name: class index}`` of the foreground classes, from the bundle's ``metadata.json`` (``channel_def``)."""
    metadata = json.loads((Path(bundle_dir(bundle)) / "configs" / "metadata.json").read_text())
    channels = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    return {name: int(index) for index, name in sorted(channels.items(), key=lambda kv: int(kv[0])) if int(index)}


class Predictor:
    """Probabilities of a trained run on single volumes.

    Args:
        bundle: the run's bundle (``"acdc"``, ...).
        run_dir: the run's ``output_dir``.
        ckpt_path: its weights (``None``: ``models/model_final.pt`` if present, else ``models/model.pt``).
        device: torch device.
    """

    def __init__(self, bundle: str, run_dir: str | Path, ckpt_path: str | Path | None = None, device: str = "cpu"):
        self.bundle, self.run_dir, self.device = bundle, Path(run_dir), torch.device(device)
        if ckpt_path is None:
            final = self.run_dir / "models" / "model_final.pt"
            ckpt_path = final if final.is_file() else self.run_dir / "models" / "model.pt"
        self.ckpt_path = Path(ckpt_path)
        parser = ConfigParser()
        parser.read_config([str(f) for f in bundle_configs(bundle, kind="inference")])
        parser.update({"run_dir": str(self.run_dir), "device": f"$torch.device('{self.device}')"})
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.network = parser.get_parsed_content("network")
        self.inferer = parser.get_parsed_content("inferer")
        self._load_raw = LoadImage(image_only=True, ensure_channel_first=True)
        self._lock = threading.Lock()
        self._loaded_mtime: float | None = None
        self._load()

    def _load(self) -> None:
        if not self.ckpt_path.is_file():
            raise FileNotFoundError(f"checkpoint {str(self.ckpt_path)!r} not found")
        mtime = self.ckpt_path.stat().st_mtime
        if mtime == self._loaded_mtime:
            return
        state = torch.load(str(self.ckpt_path), map_location=self.device, weights_only=True)
        self.network.load_state_dict(state["model"] if "model" in state else state)
        self.network.eval()
        self._loaded_mtime = mtime
        logger.info("serving weights %s", self.ckpt_path)

    def __call__(self, image_path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(probabilities (K, *spatial), image (C, *spatial), affine (4, 4))`` of a NIfTI volume, input grid.

        Raises:
            LabelCheckError: the image cannot be read or is not a 3D volume.
        """
        with self._lock:
            self._load()
            try:
                data = self.preprocessing({"image": str(image_path)})
            except Exception as error:  # a broken or truncated upload: MONAI wraps the reader's error
                raise LabelCheckError(f"image {Path(image_path).name!r} cannot be read: {error}") from error
            image = data["image"]
            if image.ndim != 4:
                raise LabelCheckError(f"image must be a 3D volume (C, H, W, D), got shape {tuple(image.shape)}")
            with torch.no_grad():
                logits = self.inferer(image[None].to(self.device), self.network)
            probabilities = torch.softmax(logits[0].float(), 0).cpu()
            operations = list(image.applied_operations)
            data["pred"] = MetaTensor(probabilities, meta=dict(image.meta), applied_operations=operations)
            inverted = Invertd(keys="pred", transform=self.preprocessing, orig_keys="image", nearest_interp=False)(data)
            raw = self._load_raw(str(image_path))
        return np.asarray(inverted["pred"], dtype=np.float32), np.asarray(raw, dtype=np.float32), np.asarray(raw.affine)
