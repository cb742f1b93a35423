"""The MONAI Label app against a real server: a phantom datastore, inference, a scribble, a training from it,
inference again, and malformed requests that get 4xx answers and leave the datastore as it was.

The server runs in ``.venv-label`` (``scripts/setup_label_env.sh``); without it the test is skipped.
"""

import json
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.label import boxes_from_json, untrained_run
from wss_monai.label.launch import LABEL_ENV, running_server
from wss_monai.transforms import tight_boxes

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


def _server(tmp_path: Path, studies: Path, regulariser: str):
    """The label app started on ``studies``, serving an untrained acdc run at 32² that trains 1 epoch per request."""
    run_dir = untrained_run("acdc", tmp_path / "run0", overrides={"spatial_size": 32, "batch_size": 8})
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(ROOT / "apps" / "wss_label" / "main.py", app_dir / "main.py")
    conf = {"bundle": "acdc", "run_dir": run_dir, "max_epochs": 1, "regulariser": regulariser}
    return running_server(app_dir, studies, conf, tmp_path / "server.log")


def test_label_server_session(tmp_path):
    studies, scribbles = _studies(tmp_path)
    with _server(tmp_path, studies, regulariser="grid_crf") as client:
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

        # the same training as MONAI Label's background task (what Slicer's Train button sends)
        status, body = client.train("segmentation", {"max_epochs": 1, "spatial_size": 32}, run_sync=False)
        assert status == 200, body[:2000]
        task, deadline = json.loads(body), time.monotonic() + 600
        while task["status"] in ("SUBMITTED", "RUNNING") and time.monotonic() < deadline:
            time.sleep(2)
            status, body = client.send("GET", "/train/")
            assert status == 200, body[:500]
            task = json.loads(body)
        assert task["status"] == "DONE", task
        served_next = (studies / ".wss_label" / "served_run.txt").read_text().strip()
        assert served_next != served and Path(served_next, "models", "model_final.pt").is_file()
        status, body = client.infer("segmentation", "patient002")
        assert status == 200, body[:500]


def _annotator_boxes(label: np.ndarray, classes) -> dict:
    """The box JSON an annotator would send: the tight box of each region of ``classes`` in each slice."""
    names = ["background", "rv", "myo", "lv"]
    rows = tight_boxes(label.astype(np.int64), num_classes=4, box_dims=2)
    return {"boxes": [{"label": names[r[0]], "start": r[1:4].tolist(), "end": (r[4:] - 1).tolist()}
                      for r in rows if r[0] in classes]}  # fmt: skip


def test_label_server_boxes(tmp_path):
    """Boxes through a live server: box JSON (the LV box inside the myocardium's) and a box mask are saved,
    bad boxes are refused with 422 and leave the datastore as it was, the box recipe trains from them."""
    studies, _ = _studies(tmp_path)
    truth = {}
    for name in ("patient001", "patient002"):
        stored = nib.load(str(next((tmp_path / "phantoms").rglob(f"{name}_frame01_gt.nii.gz"))))
        truth[name] = (np.asarray(stored.dataobj), stored.affine)
    box_json = tmp_path / "patient001_boxes.json"
    box_json.write_text(json.dumps(_annotator_boxes(truth["patient001"][0], (1, 2, 3))))
    lv_boxes = boxes_from_json(_annotator_boxes(truth["patient002"][0], (3,)), truth["patient002"][0].shape,
                               ["background", "rv", "myo", "lv"])  # fmt: skip
    box_mask = tmp_path / "patient002_boxes.nii.gz"
    nib.save(nib.Nifti1Image(lv_boxes, truth["patient002"][1]), str(box_mask))
    with _server(tmp_path, studies, regulariser="none") as client:
        client.wait()
        status, body = client.infer("segmentation", "patient001")
        assert status == 200, body[:500]
        before_training = np.asarray(nib.load(_written(tmp_path / "seg0.nii.gz", body)).dataobj)
        status, body = client.save_label("patient001", box_json, "boxes", filename="boxes.json")
        assert status == 200, body[:500]
        status, body = client.save_label("patient002", box_mask, "boxes")
        assert status == 200, body[:500]
        stored = _datastore_state(studies)
        assert {"labels/boxes/patient001.json", "labels/boxes/patient002.nii.gz"} <= set(stored[0])

        # bad boxes: 422 naming the problem, the datastore unchanged
        status, body = client.save_label("patient002", _with_value(box_mask, 7, tmp_path / "seven.nii.gz"), "boxes")
        assert status == 422 and "7" in _detail(body)
        spleen = {"boxes": [{"label": "spleen", "start": [0, 0, 0], "end": [3, 3, 0]}]}
        status, body = client.save_label("patient001", json.dumps(spleen).encode(), "boxes", filename="b.json")
        assert status == 422 and "spleen" in _detail(body)
        status, body = client.save_label("patient001", b'{"boxes": [', "boxes", filename="b.json")
        assert status == 422, body[:500]
        outside = {"boxes": [{"label": "lv", "start": [0, 0, 0], "end": [500, 3, 0]}]}
        status, body = client.save_label("patient001", json.dumps(outside).encode(), "boxes", filename="b.json")
        assert status == 422 and "500" in _detail(body)
        assert _datastore_state(studies) == stored

        # the box recipe trains from both box files; the new weights are served
        status, body = client.train("segmentation", {"max_epochs": 1, "spatial_size": 32, "supervision": "boxes"})
        assert status == 200, body[:2000]
        result = json.loads(body)
        assert result["recipe"] == "boxes" and result["images"] == 2
        assert set(result["supervision"]) == {"patient001", "patient002"}
        run_config = json.loads(Path(result["run_dir"], "configs", "train.json").read_text())
        assert (run_config["box_loss"], run_config["box_source"]) == ("prior", "files")
        status, body = client.infer("segmentation", "patient001")
        assert status == 200, body[:500]
        after_training = np.asarray(nib.load(_written(tmp_path / "seg1.nii.gz", body)).dataobj)
        assert after_training.shape == before_training.shape
        assert not np.array_equal(after_training, before_training)


def _written(path: Path, body: bytes) -> str:
    path.write_bytes(body)
    return str(path)
