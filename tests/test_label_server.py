"""The MONAI Label app against a real server: a phantom datastore, inference, a scribble, a training from it,
inference again, and malformed requests that get 4xx answers and leave the datastore as it was.

The server runs in ``.venv-label`` (``scripts/setup_label_env.sh``); without it the test is skipped.
"""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.label import untrained_run
from wss_monai.label.launch import LABEL_ENV, running_server

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (LABEL_ENV / "bin" / "monailabel").is_file(),
    reason=f"no MONAI Label environment at {LABEL_ENV}: run scripts/setup_label_env.sh (scripts/test_label.sh does)",
)


def _studies(tmp_path: Path) -> tuple[Path, dict]:
    """Two phantom frames as datastore images; their scribbles in the Slicer-painted convention (0 = none, 4 = bg)."""
    root = make_cardiac_phantoms(tmp_path / "phantoms", num_patients=2, shape=(48, 48), num_slices=(4, 5))
    studies, scribbles = tmp_path / "studies", {}
    studies.mkdir()
    for image in sorted((root / "training").glob("patient*/patient*_frame01.nii.gz")):
        name = image.name.replace("_frame01.nii.gz", "")
        shutil.copy(image, studies / f"{name}.nii.gz")
        stored = nib.load(str(image).replace(".nii.gz", "_scribble.nii.gz"))
        data = np.asarray(stored.dataobj).astype(np.uint8)  # 0..3 classes, 4 unlabelled
        painted = np.where(data == 4, 0, np.where(data == 0, 4, data)).astype(np.uint8)
        scribbles[name] = tmp_path / f"{name}_painted.nii.gz"
        nib.save(nib.Nifti1Image(painted, stored.affine), str(scribbles[name]))
    return studies, scribbles


def _datastore_state(studies: Path) -> tuple:
    labels = sorted(str(p.relative_to(studies)) for p in (studies / "labels").rglob("*") if p.is_file())
    record = json.loads((studies / "datastore_v2.json").read_text())
    return labels, {k: sorted(v.get("labels", {})) for k, v in record["objects"].items()}


def _with_value(path: Path, value: int, output: Path) -> Path:
    """A copy of a label file with one voxel set to ``value``."""
    stored = nib.load(str(path))
    data = np.asarray(stored.dataobj).copy()
    data[0, 0, 0] = value
    nib.save(nib.Nifti1Image(data, stored.affine), str(output))
    return output


def _detail(body: bytes) -> str:
    return json.loads(body)["detail"]


def test_label_server_session(tmp_path):
    studies, scribbles = _studies(tmp_path)
    run_dir = untrained_run("acdc", tmp_path / "run0", overrides={"spatial_size": 32, "batch_size": 8})
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(ROOT / "apps" / "wss_label" / "main.py", app_dir / "main.py")
    conf = {"bundle": "acdc", "run_dir": run_dir, "max_epochs": 1, "regulariser": "grid_crf"}
    with running_server(app_dir, studies, conf, tmp_path / "server.log") as client:
        info = client.wait()
        assert set(info["models"]) == {"segmentation", "refinement"}
        assert info["labels"] == ["rv", "myo", "lv"] or set(info["labels"]) == {"rv", "myo", "lv"}
        image_shape = nib.load(str(studies / "patient001.nii.gz")).shape

        status, body = client.infer("segmentation", "patient001")
        assert status == 200, body[:500]
        segmentation = tmp_path / "seg0.nii.gz"
        segmentation.write_bytes(body)
        assert nib.load(str(segmentation)).shape == image_shape

        status, body = client.save_label("patient001", scribbles["patient001"], "scribbles")
        assert status == 200, body[:500]
        before = _datastore_state(studies)

        # malformed requests: 4xx with a message, the datastore unchanged
        status, body = client.infer("no_such_model", "patient001")
        assert status == 404 and "no_such_model" in _detail(body)
        status, body = client.infer("segmentation")
        assert status == 400 and "no image" in _detail(body)
        status, body = client.infer("segmentation", "patient999")
        assert status == 404 and "patient999" in _detail(body)
        status, body = client.train("no_such_trainer")
        assert status == 404 and "no_such_trainer" in _detail(body)
        wrong_shape = tmp_path / "wrong_shape.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((10, 10, 2), np.uint8), np.eye(4)), str(wrong_shape))
        status, body = client.save_label("patient002", wrong_shape, "scribbles")
        assert status == 422 and "does not match its image" in _detail(body)
        bad_values = {name: _with_value(path, 9, tmp_path / f"{name}_bad.nii.gz") for name, path in scribbles.items()}
        status, body = client.save_label("patient002", bad_values["patient002"], "scribbles")
        assert status == 422 and "[9]" in _detail(body)
        truncated = scribbles["patient002"].read_bytes()[:200]
        status, body = client.save_label("patient002", truncated, "scribbles")
        assert status == 422 and "cannot be read" in _detail(body)
        status, body = client.save_label("patient999", scribbles["patient002"], "scribbles")
        assert status == 404
        status, body = client.infer("refinement", "patient001", label=bad_values["patient001"])
        assert status == 422 and "[9]" in _detail(body)
        assert _datastore_state(studies) == before

        # refinement from the stored scribbles: seeds hard
        status, body = client.infer("refinement", "patient001")
        assert status == 200, body[:500]
        refined_file = tmp_path / "refined.nii.gz"
        refined_file.write_bytes(body)
        refined = np.asarray(nib.load(str(refined_file)).dataobj)
        painted = np.asarray(nib.load(str(scribbles["patient001"])).dataobj)
        seeds = np.where(painted == 4, 0, painted)
        assert (refined[painted > 0] == seeds[painted > 0]).all()

        # training from the scribbles, then inference with the new weights
        status, body = client.train("segmentation", {"max_epochs": 1, "spatial_size": 32})
        assert status == 200, body[:2000]
        result = json.loads(body)
        assert result["supervision"] == {"patient001": "weak"}
        served = (studies / ".wss_label" / "served_run.txt").read_text().strip()
        assert served == result["run_dir"] and Path(served, "models", "model_final.pt").is_file()
        status, body = client.infer("segmentation", "patient001")
        assert status == 200
        after = tmp_path / "seg1.nii.gz"
        after.write_bytes(body)
        assert nib.load(str(after)).shape == image_shape
        assert not np.array_equal(
            np.asarray(nib.load(str(after)).dataobj), np.asarray(nib.load(str(segmentation)).dataobj)
        )
