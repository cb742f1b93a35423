"""multi_gpu_train.yaml: torchrun on 2 CPU processes (gloo) against 1 process, on cardiac phantoms.

With ``DistributedSampler`` rank ``r`` takes items ``r, r + 2, …`` of each epoch's permutation (seeded by
seed + epoch), so the ``k``-th steps of 2 ranks with batch ``b`` together hold the same ``2b`` items as
the ``k``-th step of 1 process (also started by torchrun, so it draws the same permutation) with
batch ``2b``. Dice-CE is a mean over items of equal size and DDP averages the ranks' gradients, so
both runs take the same steps up to floating-point rounding. The phantoms have an even number of
training slices (two frames of the same depth per patient), so no rank is padded.

The comparison runs one epoch (5 steps) with plain SGD at learning rate 0.01, and a third run of 1 process
at learning rate 0 gives the initial weights: the 2-rank and 1-process weights then agree to 4e-6-5.4e-5,
depending on the machine's load and thread count, under 0.2 % of the largest change the epoch made (0.03).
With larger steps, more steps, or AdamW, the two runs drift apart beyond rounding on this 32 x 32 network
(its 2 x 2 bottleneck under instance normalisation amplifies the different summation order of the
gradients; AdamW moves a weight whose gradient is at rounding level by about ±lr whatever its sign):
1.4e-3 after 5 SGD steps at learning rate 0.05, 9e-4 after 5 AdamW steps (learning rate 5e-4), with the
same loss to 3 digits.
"""

import json
import subprocess

import numpy as np
import pytest
import torch
from bundle_helpers import ROOT, SMALL, _env, run_bundle

from wss_monai.bundle import bundle_configs
from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.utils.bundle_runs import torchrun_command

TRAIN = bundle_configs("acdc")
INFER = bundle_configs("acdc", kind="inference")
SIZE = ROOT / "configs/supervision/size.yaml"
LAGRANGIAN = {"size_bounds": "individual", "constraint_handling": "lagrangian"}

BATCH = 4
BASE = {**SMALL, "train#flips": "[]"}  # no random flips: both runs see the same pixels
COMPARED = {"max_epochs": 1, "train#optimizer#_target_": "torch.optim.SGD", "learning_rate": 0.01}
RELATIVE_TOLERANCE = 0.02
"""Largest difference allowed between the weights of the 2-rank and the 1-process runs (one SGD epoch), as a share
of the largest change that epoch made to a weight: a run whose ranks did not average their gradients, or saw the
same items, differs by about that change itself."""

# every rank saves the state of its dual ascent and constraint monitor after training
RANK_STATE = """
+finalize:
  - "$torch.save(dict(lagrangian=@dual_ascent.state_dict(), monitor=@constraint_monitor.history),
      os.path.join(@run_dir, 'state_rank%d.pt' % wss_monai.utils.get_rank()))"
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four torchrun runs at once: 2 ranks x batch 4, 1 process x batch 8, the same at learning rate 0 (the
    initial weights; one epoch each), and 2 ranks of the Lagrangian recipe (two epochs)."""
    out = tmp_path_factory.mktemp("multi_gpu")
    data = make_cardiac_phantoms(out / "data", num_patients=6, seed=3, shape=(48, 48), num_slices=(4, 6))
    (out / "rank_state.yaml").write_text(RANK_STATE)
    plans = {
        "two": (2, bundle_configs("acdc", kind="multi_gpu_train"), {**COMPARED, "batch_size": BATCH}),
        "one": (1, bundle_configs("acdc", kind="multi_gpu_train"), {**COMPARED, "batch_size": 2 * BATCH}),
        "start": (
            1,
            bundle_configs("acdc", kind="multi_gpu_train"),
            {**COMPARED, "batch_size": 2 * BATCH, "learning_rate": 0.0},
        ),
        "lagrangian": (
            2,
            bundle_configs("acdc", SIZE, out / "rank_state.yaml", kind="multi_gpu_train"),
            {**LAGRANGIAN, "batch_size": BATCH},
        ),
    }
    processes = {}
    for name, (nproc, configs, overrides) in plans.items():
        overrides = {**BASE, **overrides, "dataset_dir": data, "output_dir": out / name}
        processes[name] = subprocess.Popen(
            torchrun_command(nproc, "training", configs, overrides),
            cwd=out,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    for name, process in processes.items():
        output = process.communicate()[0]
        if process.returncode:
            raise AssertionError(f"torchrun run {name!r} failed:\n{output[-4000:]}")
    return out


@pytest.mark.slow
def test_two_ranks_take_the_steps_of_one_process_with_twice_the_batch(runs):
    two = torch.load(runs / "two/models/model_final.pt", weights_only=False)
    one = torch.load(runs / "one/models/model_final.pt", weights_only=False)
    assert two["trainer"]["epoch_length"] == one["trainer"]["epoch_length"]  # the same number of steps
    assert set(two["model"]) == set(one["model"]) and not any(k.startswith("module.") for k in two["model"])
    start = torch.load(runs / "start/models/model_final.pt", weights_only=False)["model"]
    differences = {k: float((two["model"][k] - one["model"][k]).abs().max()) for k in one["model"]}
    change = max(float((one["model"][k] - start[k]).abs().max()) for k in one["model"])
    assert change > 1e-3  # the epoch moved the weights
    largest = sorted(differences.items(), key=lambda kv: -kv[1])[:3]
    assert max(differences.values()) < RELATIVE_TOLERANCE * change, (change, largest)


@pytest.mark.slow
def test_rank_zero_writes_one_run_folder_with_the_metrics_of_every_case(runs):
    two, one = runs / "two", runs / "one"
    for name in ("configs/train.json", "datalist.json", "timing.json", "models/model.pt", "validation/metrics.csv"):
        assert (two / name).is_file(), name
    assert len(list((two / "tensorboard").glob("events.out.tfevents.*"))) == 1
    rows_two = (two / "validation/metrics.csv").read_text().splitlines()
    rows_one = (one / "validation/metrics.csv").read_text().splitlines()
    # both ranks' cases, in the datalist's order, with the Dice of (nearly) the same weights
    assert [r.split(",")[0] for r in rows_two] == [r.split(",")[0] for r in rows_one] and len(rows_two) == 1 + 4
    values_two = np.array([r.split(",")[1:] for r in rows_two[1:]], dtype=float)
    values_one = np.array([r.split(",")[1:] for r in rows_one[1:]], dtype=float)
    np.testing.assert_allclose(values_two, values_one, atol=1e-4)
    assert json.loads((two / "configs/train.json").read_text())["batch_size"] == BATCH


@pytest.mark.slow
def test_inference_alone_reads_a_multi_gpu_run(runs, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = runs / "data/training/patient001/patient001_frame01.nii.gz"
    (inputs / source.name).write_bytes(source.read_bytes())
    run_bundle("inferring", INFER, cwd=tmp_path, base={}, run_dir=runs / "two", input_dir=inputs)
    assert (runs / "two/predictions/patient001_frame01_seg.nii.gz").is_file()


@pytest.mark.slow
def test_lagrangian_multipliers_and_constraint_statistics_agree_across_ranks(runs):
    run = runs / "lagrangian"
    rank0, rank1 = (torch.load(run / f"state_rank{r}.pt", weights_only=False) for r in (0, 1))
    (term0,), (term1,) = rank0["lagrangian"]["terms"], rank1["lagrangian"]["terms"]
    assert torch.equal(term0["dual_keys"], term1["dual_keys"])
    assert torch.equal(term0["multipliers"], term1["multipliers"])
    np.testing.assert_equal(rank0["monitor"], rank1["monitor"])
    # every training slice has its multipliers on both ranks, though each rank trained on half of them
    epoch_length = torch.load(run / "models/model_final.pt", weights_only=False)["trainer"]["epoch_length"]
    assert BATCH * (epoch_length - 1) < term0["dual_keys"].numel() / 2 <= BATCH * epoch_length
    assert (term0["multipliers"] > 0).any()
    assert len((run / "constraints.csv").read_text().splitlines()) == 1 + SMALL["max_epochs"]
