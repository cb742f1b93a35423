"""Hybrid supervision: patient-level full / weak marks and the per-image switch loss."""

from __future__ import annotations

import copy

import pytest
import torch
from monai.losses import DiceLoss

from wss_monai.data.hybrid import make_hybrid_datalist
from wss_monai.losses.base import WeakLoss
from wss_monai.losses.composite import TargetLoss
from wss_monai.losses.partial_ce import PartialCrossEntropyLoss
from wss_monai.losses.supervision_switch import SupervisionSwitchLoss, supervision_mask


def datalist(num_patients: int = 10, frames: int = 2) -> dict:
    cases = [
        {"image": f"p{p:03d}_f{f}.nii.gz", "patient": f"patient{p:03d}", "frame": f"frame{f:02d}"}
        for p in range(num_patients)
        for f in range(frames)
    ]
    return {"training": cases, "validation": [{"image": "v.nii.gz", "patient": "patient999"}], "seed": 0}


def full_patients(hybrid: dict) -> set[str]:
    return {c["patient"] for c in hybrid["training"] if c["supervision"] == "full"}


@pytest.mark.parametrize("n", [0, 1, 3, 10])
def test_exactly_n_full_patients_split_by_patient(n):
    hybrid = make_hybrid_datalist(datalist(), num_full_patients=n, seed=1)
    assert len(full_patients(hybrid)) == n and hybrid["num_full_patients"] == n
    assert sorted(full_patients(hybrid)) == hybrid["full_patients"] and hybrid["hybrid_seed"] == 1
    marks: dict[str, set] = {}
    for case in hybrid["training"]:
        marks.setdefault(case["patient"], set()).add(case["supervision"])
    assert all(len(v) == 1 for v in marks.values())  # every frame of a patient shares the mark
    assert sum(c["supervision"] == "full" for c in hybrid["training"]) == 2 * n
    assert {c["supervision"] for c in hybrid["training"]} <= {"full", "weak"}


def test_seeded_nested_and_input_not_mutated():
    original = datalist()
    before = copy.deepcopy(original)
    a = make_hybrid_datalist(original, 3, seed=4)
    assert original == before
    assert a == make_hybrid_datalist(original, 3, seed=4)
    assert any(full_patients(make_hybrid_datalist(original, 3, seed=s)) != full_patients(a) for s in range(5, 10))
    # nested budgets with one seed: the 3 full patients are among the 6
    assert full_patients(a) <= full_patients(make_hybrid_datalist(original, 6, seed=4))
    # other splits copied unchanged, cases are new dicts
    assert a["validation"] == original["validation"] and "supervision" not in a["validation"][0]
    assert a["training"][0] is not original["training"][0] and a["seed"] == 0


def test_patient_order_does_not_matter():
    lst = datalist()
    shuffled = {**lst, "training": lst["training"][::-1]}
    assert full_patients(make_hybrid_datalist(lst, 4, seed=2)) == full_patients(
        make_hybrid_datalist(shuffled, 4, seed=2)
    )


def test_custom_split_and_keys():
    lst = {"train": [{"case": "a"}, {"case": "b"}, {"case": "a"}]}
    out = make_hybrid_datalist(lst, 1, seed=0, split="train", patient_key="case", key="mode")
    assert {c["case"] for c in out["train"] if c["mode"] == "full"} == set(out["full_patients"])
    assert len(out["full_patients"]) == 1


@pytest.mark.parametrize(
    "args, match",
    [
        ({"num_full_patients": 11}, r"num_full_patients must be an integer in \[0, 10\] .* got 11"),
        ({"num_full_patients": -1}, r"num_full_patients must be an integer in \[0, 10\] .* got -1"),
        ({"num_full_patients": 2.5}, r"got 2.5"),
        ({"num_full_patients": 1, "split": "train"}, r"split 'train' is not in the datalist; splits present"),
        (
            {"num_full_patients": 1, "patient_key": "subject"},
            r"cases at positions \[0, 1, .*\] of 'training' have no 'subject' key",
        ),
    ],
)
def test_datalist_errors(args, match):
    with pytest.raises(ValueError, match=match):
        make_hybrid_datalist(datalist(), **args)
    with pytest.raises(ValueError, match=r"datalist\['training'\] must be a non-empty list of cases"):
        make_hybrid_datalist({"training": []}, 0)


# ----------------------------------------------------------------------------- switch loss


class PerImage(WeakLoss):
    """Known per-image values: factor * mean of the logits of each image; counts its calls."""

    def __init__(self, factor: float, trailing: bool = False) -> None:
        super().__init__(reduction="none")
        self.factor, self.trailing, self.calls = factor, trailing, 0

    def forward(self, logits, batch):
        self.calls += 1
        if self.trailing:
            return self.factor * logits.mean((2, 3))  # (B, C): trailing dims get averaged
        return self.factor * logits.flatten(1).mean(1)


def test_switch_equals_full_on_full_items_and_weak_on_weak_items():
    logits = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 2, 3, 3).clone()
    full, weak = PerImage(1.0), PerImage(-10.0)
    batch = {"supervision": ["full", "weak", "weak", "full"]}
    out = SupervisionSwitchLoss(full, weak, reduction="none")(logits, batch)
    assert out.tolist() == [0.0, -10.0, -20.0, 3.0]
    assert SupervisionSwitchLoss(full, weak)(logits, batch).item() == pytest.approx(-27 / 4)
    assert SupervisionSwitchLoss(full, weak, reduction="sum")(logits, batch).item() == pytest.approx(-27)
    weighted = SupervisionSwitchLoss(full, weak, full_weight=2.0, weak_weight=0.5, reduction="none")(logits, batch)
    assert weighted.tolist() == [0.0, -5.0, -10.0, 6.0]
    # a boolean / integer tensor mask works as well
    tensor_batch = {"supervision": torch.tensor([1, 0, 0, 1])}
    assert SupervisionSwitchLoss(full, weak, reduction="none")(logits, tensor_batch).tolist() == out.tolist()


def test_switch_with_real_terms_and_trailing_dims():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 4, 4)
    label = torch.randint(0, 2, (3, 1, 4, 4))
    scribble = torch.full_like(label, -1)
    scribble[:, :, 0, :] = label[:, :, 0, :]
    batch = {"label": label, "scribble": scribble, "supervision": ["weak", "full", "weak"]}
    dice = TargetLoss(DiceLoss(to_onehot_y=True, softmax=True, reduction="none"))
    pce = PartialCrossEntropyLoss(key="scribble", reduction="none")
    out = SupervisionSwitchLoss(dice, pce, reduction="none")(logits, batch)
    dice_values = dice(logits, batch).flatten(1).mean(1)  # (B, C, 1, 1) averaged per image
    pce_values = pce(logits, batch)
    torch.testing.assert_close(out, torch.stack([pce_values[0], dice_values[1], pce_values[2]]))
    trailing = SupervisionSwitchLoss(PerImage(1.0, trailing=True), PerImage(2.0), reduction="none")
    assert trailing(torch.ones(2, 3, 2, 2), {"supervision": ["full", "weak"]}).tolist() == [1.0, 2.0]


def test_gradients_only_from_the_own_term_and_unused_terms_skipped():
    logits = torch.randn(2, 2, 3, 3, requires_grad=True)
    full, weak = PerImage(1.0), PerImage(3.0)
    SupervisionSwitchLoss(full, weak, reduction="sum")(logits, {"supervision": ["full", "weak"]}).backward()
    per_voxel = 1 / 18
    torch.testing.assert_close(logits.grad[0], torch.full((2, 3, 3), per_voxel))
    torch.testing.assert_close(logits.grad[1], torch.full((2, 3, 3), 3 * per_voxel))
    full, weak = PerImage(1.0), PerImage(3.0)
    SupervisionSwitchLoss(full, weak)(logits, {"supervision": ["full", "full"]})
    assert (full.calls, weak.calls) == (1, 0)
    SupervisionSwitchLoss(full, weak)(logits, {"supervision": ["weak", "weak"]})
    assert (full.calls, weak.calls) == (1, 1)


def test_supervision_mask():
    assert supervision_mask(["full", "weak"]).tolist() == [True, False]
    assert supervision_mask("full").tolist() == [True]
    assert supervision_mask(torch.tensor([True, False])).tolist() == [True, False]
    assert supervision_mask(["labelled", "weak"], full_value="labelled").tolist() == [True, False]
    with pytest.raises(ValueError, match=r"supervision values must be 'full' or 'weak', got \['partial'\]"):
        supervision_mask(["full", "partial"])
    with pytest.raises(ValueError, match=r"numeric supervision mask must hold 0 / 1 values, got \[0.0, 0.5\]"):
        supervision_mask(torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match=r"one value per image \(3\), got 2"):
        supervision_mask(["full", "weak"], num_images=3)


def test_switch_errors():
    logits = torch.zeros(2, 2, 2, 2)
    with pytest.raises(ValueError, match=r"full_loss must be a torch module"):
        SupervisionSwitchLoss(lambda x, b: x, PerImage(1.0))
    with pytest.raises(ValueError, match=r"weak_weight must be a finite number >= 0, got -1.0"):
        SupervisionSwitchLoss(PerImage(1.0), PerImage(1.0), weak_weight=-1.0)
    with pytest.raises(ValueError, match=r"reduction must be one of"):
        SupervisionSwitchLoss(PerImage(1.0), PerImage(1.0), reduction="max")
    with pytest.raises(KeyError, match=r"needs the batch key 'supervision'"):
        SupervisionSwitchLoss(PerImage(1.0), PerImage(1.0))(logits, {})
    mean_term = PartialCrossEntropyLoss(key="scribble")  # reduction="mean": a scalar
    batch = {"scribble": torch.zeros(2, 1, 2, 2, dtype=torch.long), "supervision": ["full", "weak"]}
    with pytest.raises(
        ValueError, match=r"full_loss must return one value per image.* got \(\); build it with reduction='none'"
    ):
        SupervisionSwitchLoss(mean_term, PerImage(1.0))(logits, batch)
    with pytest.raises(ValueError, match=r"one value per image \(2\), got 3"):
        SupervisionSwitchLoss(PerImage(1.0), PerImage(1.0))(logits, {"supervision": ["full", "weak", "weak"]})
