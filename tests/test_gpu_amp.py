"""Mixed precision on a GPU: every recipe trains with ``--amp true`` on CUDA with finite loss terms.

The paper-scale profile trains in fp16 (``configs/profiles/paper_gpu.yaml``); a loss term that
overflows in half precision (an exp, a log-barrier at t = 1e9, a sum over many voxels) makes the
gradient scaler skip steps without an error. Each run here trains the acdc bundle on phantoms for two
epochs on the GPU in mixed precision and every loss term the trainer logged for every epoch must be
finite. Skipped where no CUDA device is present (CI has none); run on a GPU machine. Measured on one
NVIDIA H200 (torch 2.11 + CUDA 13): the seven recipes below trained with finite terms in both epochs.
"""

import json
import math
import re

import pytest
import torch
from bundle_helpers import SMALL, start_bundle

from wss_monai.bundle import bundle_configs
from wss_monai.data.phantoms import make_cardiac_phantoms

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (mixed precision on a GPU)"),
]

RECIPES = {  # name: (config files after the bundle's, overrides)
    "full": (["configs/supervision/full.yaml"], {}),
    "scribble + dense CRF": (["configs/supervision/scribble.yaml", "configs/regularisers/dense_crf.yaml"], {}),
    "scribble + grid CRF": (["configs/supervision/scribble.yaml", "configs/regularisers/grid_crf.yaml"], {}),
    "scribble + gated CRF": (["configs/supervision/scribble.yaml", "configs/regularisers/gated_crf.yaml"], {}),
    "size, log-barrier at t = 1e9": (["configs/supervision/size.yaml"], {"log_barrier_t0": 1e9}),
    "boxes, tightness prior": (["configs/supervision/boxes.yaml"], {}),
    "points": (["configs/supervision/points.yaml"], {}),
}
TERMS = re.compile(r"loss_terms: epoch (\d+)/\d+: (.*)")


def _terms(log: str) -> dict[int, dict[str, float]]:
    """``{epoch: {term: mean}}`` from the LossTermsLogger lines of a run's log."""
    epochs = {}
    for epoch, text in TERMS.findall(log):
        values = re.findall(r"(\S+) (\S+)", text)
        epochs[int(epoch)] = {name: float(value) for name, value in values}
    return epochs


def test_every_recipe_trains_in_mixed_precision_with_finite_terms(tmp_path):
    data = make_cardiac_phantoms(tmp_path / "acdc", num_patients=4, seed=1, shape=(64, 64), num_slices=(4, 5))
    runs = {}
    for name, (files, extra) in RECIPES.items():
        out = tmp_path / re.sub(r"[^a-z0-9]+", "_", name.lower())
        out.mkdir()
        overrides = {**SMALL, "spatial_size": 64, "amp": True, "dataset_dir": data, "output_dir": out, **extra}
        log = open(out / "train.log", "w")  # noqa: SIM115  (closed below, once the run ends)
        runs[name] = (out, log, start_bundle("training", bundle_configs("acdc", *files), tmp_path, log, **overrides))
    for name, (out, log, process) in runs.items():
        process.wait()
        log.close()
        text = (out / "train.log").read_text()
        assert process.returncode == 0, f"{name} failed:\n{text[-3000:]}"
        epochs = _terms(text)
        assert sorted(epochs) == [1, 2], f"{name}: loss terms logged for epochs {sorted(epochs)}"
        bad = {e: t for e, t in epochs.items() if not all(math.isfinite(v) for v in t.values())}
        assert not bad, f"{name}: non-finite loss terms in mixed precision: {bad}"
        recorded = json.loads((out / "configs" / "train.json").read_text())
        assert recorded["amp"] is True, name
        assert (out / "models" / "model.pt").is_file(), name
