import pytest
import torch

from wss_monai.utils.bundle_runs import finished_run


def _save(run, **trainer):
    (run / "models").mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, **({"trainer": trainer} if trainer else {})}, run / "models" / "model_final.pt")


def test_a_run_is_finished_only_once_its_last_epoch_is_done(tmp_path):
    assert not finished_run(tmp_path)  # no checkpoint at all
    _save(tmp_path, epoch_length=52, iteration=104, max_epochs=25)  # written after epoch 2 of 25
    assert not finished_run(tmp_path)
    _save(tmp_path, epoch_length=52, iteration=1300, max_epochs=25)
    assert finished_run(tmp_path)
    _save(tmp_path)
    with pytest.raises(ValueError, match=r"model_final\.pt holds no trainer state"):
        finished_run(tmp_path)
