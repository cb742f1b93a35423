"""Datastore boxes through the box recipe (wss_monai.label): box masks stored as the label app stores them, box
JSON and full labels as boxes, the recipe a datastore picks, the run's config files and a short training."""

import ast
import json
import logging
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import config_parser, run_command

from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.label import (
    LabelCheckError,
    ScribbleConvention,
    boxes_from_json,
    choose_supervision,
    label_training_command,
    make_label_datalist,
    require_box_files,
    untrained_run,
)
from wss_monai.label.predict import Predictor
from wss_monai.transforms import tight_boxes
from wss_monai.utils.bundle_runs import finished_run

NAMES = ["background", "rv", "myo", "lv"]
PAINTED = ScribbleConvention.preset("painted", num_classes=4)


def _annotator_boxes(label: np.ndarray, classes) -> dict:
    """The box JSON an annotator would send: the tight box of each region of ``classes`` in each slice."""
    rows = tight_boxes(label.astype(np.int64), num_classes=4, box_dims=2)
    return {"boxes": [{"label": NAMES[r[0]], "start": r[1:4].tolist(), "end": (r[4:] - 1).tolist()}
                      for r in rows if r[0] in classes]}  # fmt: skip


def _store(studies, tag, image_id, ext=".nii.gz"):
    """Where MONAI Label's local datastore keeps the label ``tag`` of an image: ``labels/<tag>/<id><ext>``."""
    folder = studies / "labels" / tag
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{image_id}{ext}"


@pytest.fixture(scope="module")
def datastore(tmp_path_factory):
    """Four phantom frames in a datastore folder: a box mask (LV boxes, as ``boxes_from_json`` writes it), box JSON
    (all classes: the LV box inside the myocardium's), a final label, painted scribbles."""
    root = tmp_path_factory.mktemp("label_boxes")
    data = make_cardiac_phantoms(root / "acdc", num_patients=2, seed=0, shape=(32, 32), num_slices=(3, 4))
    studies = root / "studies"
    studies.mkdir()
    records, truth = [], {}
    for image in sorted((data / "training").rglob("*_frame??.nii.gz")):
        image_id = image.name[: -len(".nii.gz")]
        shutil.copy(image, studies / image.name)
        records.append({"id": image_id, "image": str(studies / image.name)})
        truth[image_id] = nib.load(str(image).replace(".nii.gz", "_gt.nii.gz"))
    mask_id, json_id, final_id, scribble_id = (r["id"] for r in records)
    gt = {k: np.asarray(v.dataobj) for k, v in truth.items()}
    mask = boxes_from_json(_annotator_boxes(gt[mask_id], (3,)), gt[mask_id].shape, NAMES)
    nib.save(nib.Nifti1Image(mask, truth[mask_id].affine), str(_store(studies, "boxes", mask_id)))
    _store(studies, "boxes", json_id, ".json").write_text(json.dumps(_annotator_boxes(gt[json_id], (1, 2, 3))))
    shutil.copy(str(truth[final_id].get_filename()), _store(studies, "final", final_id))
    dataset = np.asarray(nib.load(truth[scribble_id].get_filename().replace("_gt", "_scribble")).dataobj)
    painted = np.where(dataset == 4, 0, np.where(dataset == 0, 4, dataset)).astype(np.uint8)
    nib.save(nib.Nifti1Image(painted, truth[scribble_id].affine), str(_store(studies, "scribbles", scribble_id)))
    records[0]["boxes"] = str(_store(studies, "boxes", mask_id))
    records[1]["boxes"] = str(_store(studies, "boxes", json_id, ".json"))
    records[2]["final"] = str(_store(studies, "final", final_id))
    records[3]["scribbles"] = str(_store(studies, "scribbles", scribble_id))
    return {"records": records, "gt": gt, "mask": mask, "root": root}


def _configs(command):
    return ast.literal_eval(command[command.index("--config_file") + 1])


# ---------------------------------------------------------------------------------------------- the recipe chosen


def test_auto_picks_the_recipe_that_covers_more_images(datastore):
    records = datastore["records"]
    assert choose_supervision(records) == "boxes"  # mask, JSON, final (3) against final, scribbles (2)
    assert choose_supervision([records[0], *records[2:]]) == "scribbles"  # 2 against 2: scribbles
    assert choose_supervision(records[:1]) == "boxes"
    assert choose_supervision(records, "scribbles") == "scribbles"
    with pytest.raises(ValueError, match=r"supervision must be one of \('auto', 'scribbles', 'boxes'\), got 'box'"):
        choose_supervision(records, "box")


def test_box_datalist_and_command_point_at_the_box_recipe_and_the_box_masks(datastore, tmp_path, caplog):
    records, gt, mask = datastore["records"], datastore["gt"], datastore["mask"]
    with caplog.at_level(logging.WARNING, logger="wss_monai.label.datalist"):
        datalist = make_label_datalist(records, tmp_path / "files", PAINTED, 4, 255, tmp_path / "datalist.json",
                                       class_names=NAMES)  # fmt: skip
    scribbled = records[3]["id"]
    assert datalist["supervision"] == "boxes" and datalist["left_out"] == [scribbled]
    assert re.search(rf"images \['{scribbled}'\] have scribbles only, which the boxes recipe does not read",
                     caplog.text)  # fmt: skip
    assert [c["supervision"] for c in datalist["training"]] == ["boxes", "boxes", "full"]
    assert json.loads((tmp_path / "datalist.json").read_text()) == datalist
    from_mask, from_json, from_final = (c["box_file"] for c in datalist["training"])
    assert np.array_equal(np.asarray(nib.load(from_mask).dataobj), mask)
    json_boxes = json.loads(Path(from_json).read_text())["boxes"]  # half-open; the LV box lies inside the myocardium's
    lv = [b["box"] for b in json_boxes if b["class"] == 3]
    myo = [b["box"] for b in json_boxes if b["class"] == 2]
    assert lv and all(any(m[:3] <= b[:3] and b[3:] <= m[3:] for m in myo) for b in lv)
    final_id = records[2]["id"]
    expected = tight_boxes(gt[final_id].astype(np.int64), num_classes=4, box_dims=2).tolist()
    assert [[b["class"], *b["box"]] for b in json.loads(Path(from_final).read_text())["boxes"]] == expected

    command = label_training_command("acdc", tmp_path / "datalist.json", tmp_path / "run", "none",
                                     supervision=datalist["supervision"])  # fmt: skip
    names = [c.split("/")[-1] for c in _configs(command)]
    assert names[2:] == ["boxes.yaml", "datastore.yaml", "datastore_boxes.yaml"] and "scribble_files.yaml" not in names
    parser = config_parser(_configs(command), label_datalist_file=str(tmp_path / "datalist.json"),
                           output_dir=str(tmp_path / "run"), spatial_size=32)  # fmt: skip
    assert parser.get_parsed_content("box_recipe").from_files and parser.get_parsed_content("label_keys") == []
    volumes = parser.get_parsed_content("train#volumes")
    cases = parser.get_parsed_content("train#volumes#data")
    assert [c["box_file"] for c in cases] == [from_mask, from_json, from_final]
    ids = np.asarray(volumes[0]["box_ids"])  # (K - 1, H, W, D) box-id map of the stored mask: LV boxes only
    assert ids.shape == (3, *mask.shape) and not ids[:2].any()
    assert np.array_equal(ids[2] > 0, mask == 3)


def test_only_boxes_now_train_and_a_scribble_run_names_the_boxes_it_leaves_out(datastore, tmp_path, caplog):
    records = datastore["records"]
    boxes_only = make_label_datalist(records[:2], tmp_path / "b", PAINTED, 4, 255, class_names=NAMES)
    assert boxes_only["supervision"] == "boxes" and len(boxes_only["training"]) == 2 and not boxes_only["left_out"]
    with caplog.at_level(logging.WARNING, logger="wss_monai.label.datalist"):
        scribbles = make_label_datalist(records, tmp_path / "s", PAINTED, 4, 255, supervision="scribbles")
    left = [records[0]["id"], records[1]["id"]]
    assert scribbles["supervision"] == "scribbles" and scribbles["left_out"] == left
    assert [c["supervision"] for c in scribbles["training"]] == ["full", "weak"]
    assert f"images {left} have boxes only, which the scribbles recipe does not read" in caplog.text
    command = label_training_command("acdc", "d.json", "out", "dense_crf", supervision=scribbles["supervision"])
    assert [c.split("/")[-1] for c in _configs(command)][2:] == ["scribble_files.yaml", "dense_crf.yaml",
                                                                 "datastore.yaml"]  # fmt: skip
    with pytest.raises(ValueError, match=r"nothing to train on with the boxes recipe among 1 images: .* images "
                                         rf"\['{records[3]['id']}'\] have scribbles only"):  # fmt: skip
        make_label_datalist(records[3:], tmp_path / "x", PAINTED, 4, 255, supervision="boxes")
    with pytest.raises(ValueError, match=r"training cases \['p'\] have no box_file: the datalist was not written"):
        require_box_files([{"image": "p.nii.gz", "patient": "p", "scribble": "p_s.nii.gz"}])
    with pytest.raises(ValueError, match=r"supervision must be one of \('scribbles', 'boxes'\), got 'auto'"):
        label_training_command("acdc", "d.json", "out", supervision="auto")


# ---------------------------------------------------------------------------------------------- bad boxes


def test_bad_box_masks_and_box_json_are_refused_naming_the_image(datastore, tmp_path):
    record = dict(datastore["records"][0])
    image = nib.load(record["image"])
    shape, affine = image.shape, image.affine

    def stored(name, data, grid=affine):
        nib.save(nib.Nifti1Image(np.asarray(data, np.uint8), grid), str(tmp_path / name))
        return {**record, "boxes": str(tmp_path / name)}

    def build(bad):
        return make_label_datalist([bad], tmp_path / "out", PAINTED, 4, 255, class_names=NAMES)

    values = np.zeros(shape, np.uint8)
    values[2:6, 2:6, 0] = 7  # not a class index
    with pytest.raises(LabelCheckError, match=rf"boxes of {record['id']} holds values \[7\] outside the allowed "
                                              r"\[0, 1, 2, 3\]"):  # fmt: skip
        build(stored("values.nii.gz", values))
    nested = np.zeros(shape, np.uint8)
    nested[2:12, 2:12, 0], nested[4:8, 4:8, 0] = 2, 3  # an LV box inside a myocardium box: not a mask's job
    with pytest.raises(LabelCheckError, match=rf"boxes of {record['id']}: .*the class-2 region with bounding box lo "
                                              r"\[2, 2, 0\], hi \[12, 12, 1\] is not a filled box"):  # fmt: skip
        build(stored("nested.nii.gz", nested))
    with pytest.raises(LabelCheckError, match=r"affine differs from its image's by up to 1"):
        build(stored("moved.nii.gz", np.zeros(shape), affine + np.diag([1.0, 0, 0, 0])))
    (tmp_path / "spleen.json").write_text(json.dumps({"boxes": [{"label": "spleen", "start": [0, 0, 0],
                                                                 "end": [3, 3, 0]}]}))  # fmt: skip
    with pytest.raises(LabelCheckError, match=rf"boxes of {record['id']} \(spleen.json\): box label 'spleen' is not "
                                              r"a class name: \['background', 'rv', 'myo', 'lv'\]"):  # fmt: skip
        build({**record, "boxes": str(tmp_path / "spleen.json")})
    (tmp_path / "seven.json").write_text(json.dumps({"boxes": [{"label": 7, "start": [0, 0, 0], "end": [3, 3, 0]}]}))
    with pytest.raises(LabelCheckError, match=r"box label 7 must be a foreground class in 1\.\.3"):
        build({**record, "boxes": str(tmp_path / "seven.json")})
    (tmp_path / "broken.json").write_text('{"boxes": [')
    with pytest.raises(LabelCheckError, match=rf"boxes of {record['id']} \(broken.json\): Expecting value"):
        build({**record, "boxes": str(tmp_path / "broken.json")})


# ---------------------------------------------------------------------------------------------- a training run


@pytest.mark.slow
def test_a_datastore_with_boxes_trains_through_the_box_recipe_and_is_served(datastore, tmp_path):
    """As the app's training task does: datalist, command from the served (untrained) run's weights, a subprocess."""
    records = datastore["records"]
    served = untrained_run("acdc", tmp_path / "served", overrides={"spatial_size": 32})
    datalist = make_label_datalist(records, tmp_path / "train/annotations", PAINTED, 4, 255,
                                   tmp_path / "train/datalist.json", class_names=NAMES)  # fmt: skip
    run = tmp_path / "train/run"
    command = label_training_command("acdc", tmp_path / "train/datalist.json", run, "dense_crf",
                                     initial_weights=served / "models/model_final.pt",
                                     overrides={"max_epochs": 2, "spatial_size": 32, "batch_size": 8},
                                     supervision=datalist["supervision"])  # fmt: skip
    result = run_command(command, cwd=tmp_path)
    assert "fine-tuning from" in result.stdout + result.stderr
    # no validation split in a datastore run: models/model_final.pt (what the app serves) is its model
    assert finished_run(run)
    final = torch.load(run / "models/model_final.pt", weights_only=False)
    assert final["log_barrier"]["t"] == pytest.approx(5.0 * 1.1**2)  # the box prior's schedule ran two epochs
    recorded = json.loads((run / "configs/train.json").read_text())
    assert recorded["box_source"] == "files" and recorded["label_keys"] == []
    probabilities, _, _ = Predictor("acdc", run)(records[3]["image"])  # the image left out, segmented
    assert probabilities.shape == (4, *nib.load(records[3]["image"]).shape)
    assert np.allclose(probabilities.sum(0), 1.0, atol=1e-4)
