"""The datastore's annotations as a bundle datalist (wss_monai.label.datalist), upload checks, boxes, the run."""

import json

import nibabel as nib
import numpy as np
import pytest

from wss_monai.label import (
    LabelCheckError,
    ScribbleConvention,
    box_file_json,
    boxes_from_json,
    check_same_grid,
    label_training_command,
    make_label_datalist,
    read_volume,
)

PAINTED = ScribbleConvention.preset("painted", num_classes=4)


def _save(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return str(path)


@pytest.fixture
def records(tmp_path):
    shape = (6, 6, 2)
    scribble = np.zeros(shape, np.uint8)
    scribble[0, 0, 0], scribble[3, 3, 1] = 4, 3
    full = np.zeros(shape, np.uint8)
    full[2:4, 2:4] = 2
    return [
        {"id": "a", "image": _save(tmp_path / "a.nii.gz", np.zeros(shape, np.float32)),
         "scribbles": _save(tmp_path / "a_s.nii.gz", scribble)},
        {"id": "b", "image": _save(tmp_path / "b.nii.gz", np.zeros(shape, np.float32)),
         "final": _save(tmp_path / "b_f.nii.gz", full), "scribbles": _save(tmp_path / "b_s.nii.gz", scribble)},
        {"id": "c", "image": _save(tmp_path / "c.nii.gz", np.zeros(shape, np.float32)),
         "boxes": _save(tmp_path / "c_b.nii.gz", full)},
        {"id": "d", "image": _save(tmp_path / "d.nii.gz", np.zeros(shape, np.float32))},
    ]  # fmt: skip


def test_scribbles_and_full_labels_become_scribble_files(records, tmp_path):
    datalist = make_label_datalist(records, tmp_path / "out", PAINTED, 4, 4, output_json=tmp_path / "d.json")
    assert [(c["patient"], c["supervision"]) for c in datalist["training"]] == [("a", "weak"), ("b", "full")]
    assert datalist["supervision"] == "scribbles" and datalist["left_out"] == ["c"]  # 2 images each: scribbles
    assert json.loads((tmp_path / "d.json").read_text()) == datalist
    weak = np.asarray(nib.load(datalist["training"][0]["scribble"]).dataobj)
    assert weak[0, 0, 0] == 0 and weak[3, 3, 1] == 3 and (weak == 4).sum() == weak.size - 2
    full = np.asarray(nib.load(datalist["training"][1]["scribble"]).dataobj)
    assert full.max() == 2 and (full != 4).all()  # the full label wins over the image's scribbles


def test_boxes_alone_train_and_nothing_to_train_on_raises(records, tmp_path):
    boxes = make_label_datalist(records[2:], tmp_path / "out", PAINTED, 4, 4)
    assert boxes["supervision"] == "boxes" and [c["patient"] for c in boxes["training"]] == ["c"]
    with pytest.raises(ValueError, match=r"nothing to train on with the scribbles recipe among 1 images: save"):
        make_label_datalist(records[3:], tmp_path / "out", PAINTED, 4, 4)
    with pytest.raises(ValueError, match=r"unlabelled must not be a class index"):
        make_label_datalist(records, tmp_path / "out", PAINTED, 4, 2)


def test_unusable_labels_raise(records, tmp_path):
    records[0]["scribbles"] = _save(tmp_path / "moved.nii.gz", np.zeros((6, 6, 2), np.uint8), np.diag([2, 1, 1, 1]))
    with pytest.raises(LabelCheckError, match=r"scribbles of a affine differs from its image's by up to 1"):
        make_label_datalist(records, tmp_path / "out", PAINTED, 4, 4)
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(LabelCheckError, match=r"label 'broken.nii.gz' cannot be read as NIfTI"):
        read_volume(tmp_path / "broken.nii.gz")
    check_same_grid((6, 6, 2, 1), np.eye(4), (6, 6, 2), np.eye(4))  # a trailing channel is fine
    with pytest.raises(LabelCheckError, match=r"label of shape \(6, 6\) does not match its image of shape"):
        check_same_grid((6, 6), np.eye(4), (6, 6, 2), np.eye(4))


def test_boxes_from_json():
    boxes = {"boxes": [{"label": 3, "start": [0, 0, 0], "end": [1, 2, 0]}]}
    mask = boxes_from_json(boxes, (4, 4, 1), ["background", "rv", "myo", "lv"])
    assert mask.sum() == 3 * 6 and mask[1, 2, 0] == 3 and mask[2, 0, 0] == 0
    with pytest.raises(ValueError, match=r"box 0: \[0, 0, 0\]\.\.\[9, 2, 0\] is empty or outside the image"):
        boxes_from_json({"boxes": [{"label": 1, "start": [0, 0, 0], "end": [9, 2, 0]}]}, (4, 4, 1), ["bg", "x"])
    with pytest.raises(ValueError, match=r"box label 'spleen' is not a class name"):
        boxes_from_json({"boxes": [{"label": "spleen", "start": [0, 0, 0], "end": [0, 0, 0]}]}, (4, 4, 1), ["bg"])
    overlapping = {"boxes": [{"label": "myo", "start": [0, 0, 0], "end": [3, 3, 0]},
                             {"label": 3, "start": [1, 1, 0], "end": [2, 2, 0]}]}  # fmt: skip
    assert box_file_json(overlapping, (4, 4, 1), ["background", "rv", "myo", "lv"])["boxes"] == [
        {"class": 2, "box": [0, 0, 0, 4, 4, 1]},
        {"class": 3, "box": [1, 1, 0, 3, 3, 1]},
    ]


def test_training_command_lists_the_recipe_regulariser_and_overlay():
    command = label_training_command("acdc", "d.json", "out", "dense_crf", initial_weights="w.pt")
    files = command[command.index("--config_file") + 1]
    assert "scribble_files.yaml" in files and "dense_crf.yaml" in files and files.endswith("datastore.yaml']")
    assert command[command.index("--initial_weights") + 1] == "w.pt"
    with pytest.raises(ValueError, match=r"regulariser must be one of \('dense_crf', 'grid_crf', 'none'\)"):
        label_training_command("acdc", "d.json", "out", "tv")
