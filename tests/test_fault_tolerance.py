"""Runs that survive faults: a training run killed with SIGKILL and resumed equals a straight run, a save
interrupted mid-write leaves a loadable checkpoint, inference goes on past bad files, and bad command lines
or a busy output folder stop a run before it writes anything (rows of docs/fault_tolerance.md)."""

import os
import re
import shutil
import signal
import subprocess

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import run_bundle, start_bundle
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from wss_monai.bundle import bundle_configs
from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.handlers import AtomicDiskSaver, SafeCheckpointSaver
from wss_monai.utils.run_lock import LOCK_FILE

TRAIN = bundle_configs("acdc")
INFER = bundle_configs("acdc", kind="inference")
# 3 training patients x 2 frames x 3 slices = 18 slices: 3 iterations per epoch; val_interval > max_epochs, so
# the only validation is the last one (FinalValidation), which writes model.pt
RUN = {"spatial_size": 32, "batch_size": 8, "max_epochs": 4, "val_interval": 5, "num_validation": 1}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return make_cardiac_phantoms(
        tmp_path_factory.mktemp("acdc"), num_patients=4, seed=3, shape=(32, 32), num_slices=(3, 3)
    )


def _epoch(trainer_state):
    """The epoch of an ignite engine's saved state (it keeps the iteration, not the epoch)."""
    return trainer_state["iteration"] // trainer_state["epoch_length"]


def _weights(path):
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["model"] if "model" in state else state


@pytest.fixture(scope="module")
def resumed(phantoms, tmp_path_factory):
    """A straight 4-epoch run, and the same run killed (SIGKILL) once its epoch-2 checkpoint exists, then resumed."""
    out = tmp_path_factory.mktemp("resume")
    with open(out / "straight.log", "w") as log:
        straight = start_bundle("training", TRAIN, out, log, dataset_dir=phantoms, output_dir=out / "straight", **RUN)
        killed = start_bundle(
            "training", TRAIN, out, subprocess.PIPE, dataset_dir=phantoms, output_dir=out / "killed", **RUN
        )
        seen = []
        for line in killed.stdout:
            line = line.decode(errors="replace")
            seen.append(line)
            if "epoch 2: saved the resumable checkpoint" in line:
                os.kill(killed.pid, signal.SIGKILL)  # in epoch 3, or at the latest while it is being saved
                break
        killed.wait()
        assert straight.wait() == 0, (out / "straight.log").read_text()[-3000:]
    assert killed.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    checkpoint = out / "killed/models/model_final.pt"
    killed_at = _epoch(torch.load(checkpoint, map_location="cpu", weights_only=False)["trainer"])
    result = run_bundle(
        "training",
        TRAIN,
        cwd=out,
        base=RUN,
        dataset_dir=phantoms,
        output_dir=out / "killed",
        resume_checkpoint=checkpoint,
    )
    return out, killed_at, result.stdout + result.stderr


def test_killed_run_resumed_equals_a_straight_run(resumed):
    out, killed_at, log = resumed
    assert killed_at in (2, 3)  # killed before the end: the resumed run trained the remaining epochs
    assert re.search(r"taking over the lock .* of process \d+, which no longer runs", log)
    assert re.search(r"resumed from .*model_final.pt at iteration (6|9)", log)
    final = torch.load(out / "killed/models/model_final.pt", map_location="cpu", weights_only=False)
    assert _epoch(final["trainer"]) == 4
    straight, again = _weights(out / "straight/models/model_final.pt"), _weights(out / "killed/models/model_final.pt")
    difference = max(float((straight[k] - again[k]).abs().max()) for k in straight)
    print(f"max abs weight difference, straight vs killed after epoch {killed_at} and resumed: {difference:.3g}")
    assert difference <= 1e-6


def test_model_pt_written_when_max_epochs_is_below_val_interval(resumed):
    out, _, _ = resumed
    assert RUN["max_epochs"] < RUN["val_interval"]
    assert (out / "straight/models/model.pt").is_file() and (out / "straight/validation/metrics.csv").is_file()
    assert not (out / "straight" / LOCK_FILE).exists()  # released at the end


def test_inference_goes_on_past_bad_files_and_names_them(resumed, phantoms, tmp_path):
    out, _, _ = resumed
    inputs = tmp_path / "in"
    inputs.mkdir()
    sources = sorted((phantoms / "training/patient001").glob("patient001_frame??.nii.gz"))
    for source in sources:
        shutil.copy(source, inputs / source.name)
    image = nib.load(sources[0])
    array = np.asarray(image.dataobj).astype(np.float32)
    data = sources[0].read_bytes()
    (inputs / "a_truncated.nii.gz").write_bytes(data[:-16])  # the header whole, the end of the voxels cut
    nib.save(nib.Nifti1Image(np.stack([array] * 3, -1), image.affine), inputs / "b_series4d.nii.gz")
    array[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(array, image.affine), inputs / "c_nan.nii.gz")
    (inputs / "d_text.nii.gz").write_text("not an image")
    (inputs / "e_empty.nii.gz").touch()
    result = run_bundle(
        "inferring", INFER, cwd=tmp_path, check=False, base={}, run_dir=out / "straight", input_dir=inputs,
        output_dir=tmp_path / "pred",
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert "InputFailures: 5 of 7 inputs failed and were not processed" in log
    expected = {
        "a_truncated": r"EOFError: Compressed file ended before the end-of-stream marker",
        "b_series4d": r"has 3 channels \(shape \(3, 32, 32, 3\)\) but the network takes 1",
        "c_nan": r"holds 1 NaN/inf values out of",
        "d_text": r"ImageFileError: File .*d_text.nii.gz is not a gzip file",
        "e_empty": r"ImageFileError: Empty file",
    }
    for name, reason in expected.items():
        assert re.search(rf"^  \S*{name}.nii.gz: .*{reason}", log, re.MULTILINE), (name, log[-4000:])
    predictions = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert predictions == [s.name.replace(".nii.gz", "_seg.nii.gz") for s in sources]


def test_bad_command_lines_and_a_busy_folder_stop_before_writing(phantoms, tmp_path):
    run = tmp_path / "run"  # the folder of an earlier run, whose datalist must survive a bad command line
    run.mkdir()
    (run / "datalist.json").write_text('{"training": [], "validation": []}\n')
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / LOCK_FILE).write_text(f"{os.getpid()} {os.uname().nodename}\n")  # held by this live test process
    bad = r"ValueError: 2 bad command-line overrides:\n  --max_epochs must be an integer \(the config gives 50\), "
    cases = {
        "bad": ({"output_dir": run, "max_epochs": "abc", "no_such_key": 3},
                bad + r"got 'abc'\n  --no_such_key: no config file defines the id 'no_such_key'"),
        "busy": ({"output_dir": busy}, rf"RunDirBusyError: output_dir .*busy' is in use by process {os.getpid()}"),
    }  # fmt: skip
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in cases}
    processes = {
        name: start_bundle("training", TRAIN, tmp_path, logs[name], dataset_dir=phantoms, **{**RUN, **overrides})
        for name, (overrides, _) in cases.items()
    }
    for name, (_, pattern) in cases.items():
        assert processes[name].wait() != 0
        logs[name].close()
        log = (tmp_path / f"{name}.log").read_text()
        assert re.search(pattern, log), (name, log[-3000:])
    assert sorted(p.name for p in run.iterdir()) == ["datalist.json"]  # nothing written, nothing overwritten
    assert (run / "datalist.json").read_text() == '{"training": [], "validation": []}\n'
    assert sorted(p.name for p in busy.iterdir()) == [LOCK_FILE]


# ---------------------------------------------------------------- a save interrupted mid-write


class _KilledDuringSave(BaseException):
    """Stands for SIGKILL: raised from inside torch.save once half of the file is written."""


def _half_save(real_save):
    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        data = open(f, "rb").read()
        open(f, "wb").write(data[: len(data) // 2])
        raise _KilledDuringSave()

    return save


def test_kill_during_a_final_checkpoint_save_leaves_the_previous_one(tmp_path, monkeypatch):
    network = torch.nn.Linear(3, 2)
    engine = Engine(lambda e, b: network.weight.data.add_(1.0))
    saver = SafeCheckpointSaver(
        str(tmp_path), {"model": network, "trainer": engine}, save_final=True, final_filename="model_final.pt",
        final_interval=1,
    )  # fmt: skip
    saver.attach(engine)
    engine.run([0, 1], max_epochs=1)
    monkeypatch.setattr(torch, "save", _half_save(torch.save))
    with pytest.raises(_KilledDuringSave):
        engine.run([0, 1], max_epochs=2)
    monkeypatch.undo()
    state = torch.load(tmp_path / "model_final.pt", weights_only=False)
    assert _epoch(state["trainer"]) == 1
    torch.testing.assert_close(state["model"]["weight"], network.weight.data - 2.0)  # the state after epoch 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_final.pt"]  # the half-written file removed


def test_old_checkpoint_removed_only_once_the_new_one_exists(tmp_path, monkeypatch):
    network = torch.nn.Linear(3, 2)
    engine = Engine(lambda e, b: None)
    checkpoint = Checkpoint(
        {"model": network}, AtomicDiskSaver(tmp_path), n_saved=1, global_step_transform=lambda e, _: e.state.epoch
    )
    engine.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
    engine.run([0], max_epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_1.pt"]
    monkeypatch.setattr(torch, "save", _half_save(torch.save))
    with pytest.raises(_KilledDuringSave):
        engine.run([0], max_epochs=2)  # ignite asks to remove model_1.pt before it writes model_2.pt
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_1.pt"]
    torch.load(tmp_path / "model_1.pt", weights_only=False)
    later = Engine(lambda e, b: None)  # a run that goes on: its next save removes the older files
    later.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
    later.run([0], max_epochs=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_3.pt"]
