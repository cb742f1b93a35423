"""Bad input, one case per row of docs/fault_tolerance.md: each is really run and its error checked by regex.

Readers (acdc, isles, wmh) on tiny phantoms with one file broken, command-line overrides, the run-folder
lock, checkpoints that are missing, empty or unreadable, and the input checks of the data pipeline.
The end-to-end rows (a killed run resumed, inference past bad files) are in test_fault_tolerance.py.
"""

import os
import re
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandFlipd

from wss_monai.bundle import TrainedRun, check_overrides
from wss_monai.data import (
    SkipFailuresDataset,
    find_acdc_cases,
    find_isles_cases,
    find_wmh_cases,
    make_acdc_datalist,
    make_isles_datalist,
    make_wmh_datalist,
)
from wss_monai.data.lesion_phantoms import make_isles_phantoms, make_wmh_phantoms
from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.transforms import CheckImageShaped
from wss_monai.utils import (
    RunDirBusyError,
    RunRandomState,
    check_checkpoint_file,
    list_images,
    lock_run_dir,
    release_run_dir,
    require_saved_state,
    resume,
)
from wss_monai.utils.run_lock import LOCK_FILE

# ---------------------------------------------------------------- dataset readers


def _acdc(root):
    return make_cardiac_phantoms(root, num_patients=3, seed=1, shape=(32, 32), num_slices=(3, 3))


def _isles(root):
    return make_isles_phantoms(root, num_cases=3, seed=1, shape=(32, 32), num_slices=(2, 3))


def _wmh(root):
    return make_wmh_phantoms(root, num_subjects=3, seed=1, shape=(32, 32, 8))


READERS = {
    "acdc": (_acdc, find_acdc_cases, lambda root: make_acdc_datalist(root, num_validation=1)),
    "isles": (_isles, find_isles_cases, lambda root: make_isles_datalist(root, num_validation=1)),
    "wmh": (_wmh, find_wmh_cases, lambda root: make_wmh_datalist(root, num_validation=1)),
}


@pytest.fixture(scope="module")
def phantom_trees(tmp_path_factory):
    return {name: make(tmp_path_factory.mktemp(name)) for name, (make, _, _) in READERS.items()}


def _first(value):
    return value[0] if isinstance(value, list) else value


def _rewrite(path, change):
    """Rewrites a NIfTI file through ``change(array, affine) -> (array, affine)``, keeping its data type."""
    image = nib.load(path)
    array, affine = change(np.asarray(image.dataobj).copy(), image.affine.copy())
    nib.save(nib.Nifti1Image(array.astype(image.get_data_dtype()), affine), path)


def _missing_label(case):
    os.remove(case["label"])  # (ISLES names the label's folder, which bears the file's name)
    return FileNotFoundError, re.escape(os.path.basename(case["label"]).split(".nii")[0])


def _shape_mismatch(case):
    _rewrite(case["label"], lambda a, m: (a[:-2], m))
    return ValueError, "shape mismatch: .* has shape .* but .*" + re.escape(os.path.basename(case["label"]))


def _affine_mismatch(case):
    def shift(array, affine):
        affine[0, 3] += 5.0
        return array, affine

    _rewrite(case["label"], shift)
    return ValueError, "affine mismatch: .*" + re.escape(os.path.basename(case["label"])) + " differ by up to 5"


def _nan_image(case):
    image = _first(case["image"])

    def nan(array, affine):
        array = array.astype(np.float32)
        array.flat[0] = np.nan
        return array, affine

    _rewrite(image, nan)
    return ValueError, "image .*" + re.escape(os.path.basename(image)) + " contains 1 NaN/inf values"


def _bad_label_values(case):
    def seven(array, affine):
        array.flat[0] = 7
        return array, affine

    _rewrite(case["label"], seven)
    return ValueError, "label .*" + re.escape(os.path.basename(case["label"])) + r" has values \[7\] outside range"


def _truncated_label(case):
    path = case["label"]
    data = open(path, "rb").read()
    # the header stays whole, the voxels are cut (the end of the gzip stream, or two thirds of a .nii)
    open(path, "wb").write(data[: 352 + (len(data) - 352) // 3] if path.endswith(".nii") else data[:-16])
    return ValueError, "cannot read the voxels of .*" + re.escape(os.path.basename(path)) + r" \(truncated"


def _not_nifti_image(case):
    image = _first(case["image"])
    open(image, "w").write("not an image")
    return ValueError, "cannot read .*" + re.escape(os.path.basename(image))


BREAKS = {
    "missing_label": _missing_label,
    "shape_mismatch": _shape_mismatch,
    "affine_mismatch": _affine_mismatch,
    "nan_image": _nan_image,
    "bad_label_values": _bad_label_values,
    "truncated_label": _truncated_label,
    "not_nifti_image": _not_nifti_image,
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("defect", list(BREAKS))
def test_reader_names_the_bad_file(reader, defect, phantom_trees, tmp_path):
    root = tmp_path / reader
    shutil.copytree(phantom_trees[reader], root)
    _, find_cases, make_datalist = READERS[reader]
    error, pattern = BREAKS[defect](find_cases(root)[0])
    with pytest.raises(error, match=pattern):
        make_datalist(root)


# ---------------------------------------------------------------- command-line overrides

FILES = {"max_epochs": 50, "learning_rate": 0.0005, "max_train_volumes": None, "batch_size": 16,
         "train": {"optimizer": {"lr": 0.001}}, "box_epsilon": 0.5, "box_upper": 1.0}  # fmt: skip


@pytest.mark.parametrize(
    "overrides, error, pattern",
    [
        ({"max_epochs": "abc"}, ValueError, r"--max_epochs must be an integer \(the config gives 50\), got 'abc'"),
        ({"max_epochs": 2.5}, ValueError, r"--max_epochs must be an integer .* got 2.5"),
        ({"no_such_key": 3}, KeyError, r"--no_such_key: no config file defines the id 'no_such_key'"),
        ({"max_epoch": 3}, KeyError, r"did you mean 'max_epochs'\?"),
        ({"train#optimizer#lrr": 1}, KeyError, r"did you mean 'train#optimizer#lr'\?"),
        ({"batch_size": 0}, ValueError, r"--batch_size must be >= 1, got 0"),
        ({"learning_rate": "fast"}, ValueError, r"--learning_rate must be a number .* got 'fast'"),
        ({"max_train_volumes": "all"}, ValueError, r"--max_train_volumes must be an integer or null, got 'all'"),
        ({"learning_rate": [0.1, 0.2]}, ValueError, r"--learning_rate must be a number .* got \[0.1, 0.2\]"),
        (
            {"box_epsilon": [0.5, "a"]},
            ValueError,
            r"--box_epsilon must be a number or a list of numbers, one per class",
        ),
        ({"box_upper": [0.9, True]}, ValueError, r"--box_upper must be a number or a list of numbers, one per class"),
    ],
)
def test_bad_override_is_named(overrides, error, pattern):
    with pytest.raises(error, match=pattern):
        check_overrides(overrides, FILES)


def test_several_bad_overrides_are_all_named():
    pattern = r"2 bad command-line overrides:\n  --max_epochs must be an integer .*\n  --no_such_key: no config"
    with pytest.raises(ValueError, match=pattern):
        check_overrides({"max_epochs": "abc", "no_such_key": 3}, FILES)


def test_good_overrides_pass():
    check_overrides({"max_epochs": 3, "learning_rate": 1, "max_train_volumes": None, "train#optimizer#lr": 0.1}, FILES)
    check_overrides({"box_epsilon": [0.5, 0.25, 0.5]}, FILES)  # one lower size bound per class
    check_overrides({"box_upper": [1.0, 0.87, 1.0]}, FILES)  # one upper size bound per class
    check_overrides({"box_ellipse_epsilon": [0.0, 0.91, 0.84]}, {"box_ellipse_epsilon": None})  # null by default


# ---------------------------------------------------------------- the run-folder lock


def test_second_run_in_a_busy_output_dir_is_refused(tmp_path):
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            (tmp_path / LOCK_FILE).write_text(f"{other.pid} {os.uname().nodename}\n")
            with pytest.raises(RunDirBusyError, match=rf"output_dir .* is in use by process {other.pid}"):
                lock_run_dir(tmp_path)
        finally:
            other.kill()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    with subprocess.Popen([sys.executable, "-c", "pass"]) as dead:
        dead.wait()
    (tmp_path / LOCK_FILE).write_text(f"{dead.pid} {os.uname().nodename}\n")
    with caplog.at_level("WARNING"):
        lock = lock_run_dir(tmp_path)
    assert re.search(rf"taking over the lock .* of process {dead.pid}, which no longer runs", caplog.text)
    assert lock.read_text().split()[0] == str(os.getpid())
    assert release_run_dir(tmp_path) and not lock.exists()


# ---------------------------------------------------------------- checkpoints


@pytest.fixture()
def objects():
    network = torch.nn.Linear(2, 1)
    return {"model": network, "optimizer": torch.optim.SGD(network.parameters(), lr=0.1)}


def test_resume_checkpoint_missing(objects, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"resume_checkpoint '.*nowhere.pt' does not exist"):
        resume(tmp_path / "nowhere.pt", objects)


def test_resume_checkpoint_empty(objects, tmp_path):
    (tmp_path / "model_final.pt").touch()
    with pytest.raises(ValueError, match=r"resume_checkpoint '.*model_final.pt' is empty \(0 bytes\)"):
        resume(tmp_path / "model_final.pt", objects)


def test_resume_checkpoint_truncated(objects, tmp_path):
    torch.save({k: v.state_dict() for k, v in objects.items()}, tmp_path / "full.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:200])
    with pytest.raises(ValueError, match=r"resume_checkpoint '.*cut.pt' \(200 bytes\) is not a readable checkpoint"):
        resume(tmp_path / "cut.pt", objects)


def test_resume_checkpoint_lacking_objects(objects, tmp_path):
    torch.save({"model": objects["model"].state_dict()}, tmp_path / "model.pt")
    with pytest.raises(KeyError, match=r"model.pt' lacks \['optimizer'\]; it holds \['model'\]"):
        resume(tmp_path / "model.pt", objects)


def test_random_state_of_another_augmentation_pipeline(tmp_path):
    one = Compose([RandFlipd("x", prob=0.5)])
    two = Compose([RandFlipd("x", prob=0.5), RandFlipd("x", prob=0.5, spatial_axis=1)])
    with pytest.raises(
        ValueError, match=r"random state of 3 augmentation transforms but this run has 2 \(\['Compose', 'RandFlipd'\]\)"
    ):
        RunRandomState(None, one).load_state_dict(RunRandomState(None, two).state_dict())


class _Schedule:
    """A handler with state, as a recipe's weight ramp or dual variables."""

    def attach(self, engine):
        pass

    def state_dict(self):
        return {"t": 5.0}


def test_handler_with_state_left_out_of_the_checkpoints():
    schedule = _Schedule()
    require_saved_state([schedule], {"log_barrier": schedule})
    with pytest.raises(
        ValueError, match=r"the handlers \['_Schedule'\] have a state_dict but are not in the checkpoint"
    ):
        require_saved_state([schedule], {"model": torch.nn.Linear(1, 1)})


@pytest.mark.parametrize(
    "content, pattern",
    [(b"", r"checkpoint '.*model.pt' is empty \(0 bytes\): its save was interrupted"),
     (b"<html>", r"checkpoint '.*model.pt' is not a torch checkpoint \(it starts with b'<h'\)")],
)  # fmt: skip
def test_inference_checkpoint_empty_or_not_torch(content, pattern, tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/train.json").write_text("{}")
    (tmp_path / "models").mkdir()
    (tmp_path / "models/model.pt").write_bytes(content)
    with pytest.raises(ValueError, match=pattern):
        TrainedRun(tmp_path).checkpoint()


def test_evaluation_checkpoint_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ckpt_path '.*model.pt' does not exist"):
        check_checkpoint_file(tmp_path / "model.pt")


def test_inference_run_dir_without_recorded_config(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no recorded config .*train.json.*: run_dir must be the output_dir"):
        TrainedRun(tmp_path)


def test_inference_input_dir_without_images(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no file matching '\*.nii\*' in"):
        list_images(tmp_path)


# ---------------------------------------------------------------- the data pipeline's input checks


@pytest.mark.parametrize(
    "shape, pattern",
    [((1, 8, 8), r"'image' has shape \(1, 8, 8\): expected a channel axis and 3 spatial axes"),
     ((30, 8, 8, 4), r"'image' has 30 channels \(shape \(30, 8, 8, 4\)\) but the network takes 1")],
)  # fmt: skip
def test_image_of_the_wrong_shape(shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        CheckImageShaped("image", num_channels=1)({"image": torch.zeros(shape)})


def test_skip_failures_dataset_needs_the_main_process():
    loader = torch.utils.data.DataLoader(SkipFailuresDataset([{"image": "a"}]), num_workers=1, batch_size=None)
    with pytest.raises(ValueError, match=r"reports its failures from the main process: use num_workers 0"):
        list(loader)
