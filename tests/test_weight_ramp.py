import pytest
from ignite.engine import Engine, Events

from wss_monai.handlers import LossWeightRamp
from wss_monai.losses import CompositeLoss, GridPottsLoss, PartialCrossEntropyLoss


def _loss():
    return CompositeLoss({"pce": PartialCrossEntropyLoss(), "crf": {"loss": GridPottsLoss(), "weight": 9.0}})


@pytest.mark.parametrize(
    "warmup, ramp, expected",
    [(0, 0, [2.0, 2.0, 2.0]), (1, 0, [0.0, 2.0, 2.0]), (0, 3, [0.5, 1.0, 1.5]), (2, 1, [0.0, 0.0, 1.0])],
)
def test_weight_by_completed_epochs(warmup, ramp, expected):
    loss = _loss()
    schedule = LossWeightRamp(loss, "crf", weight=2.0, warmup=warmup, ramp=ramp)
    assert [schedule.weight_after(e) for e in range(3)] == expected
    assert loss.weights["crf"] == expected[0]  # set on construction: the first epoch's weight
    assert loss.weights["pce"] == 1.0


def test_stop_hands_the_term_over():
    loss = _loss()
    schedule = LossWeightRamp(loss, "pce", weight=1.0, stop=2)
    engine = Engine(lambda e, b: None)
    schedule.attach(engine)
    seen = []
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(loss.weights["pce"]))
    engine.run([0], max_epochs=4)
    assert seen == [1.0, 1.0, 0.0, 0.0]
    assert LossWeightRamp(_loss(), "crf", weight=2.0, warmup=1, ramp=1, stop=3).weight_after(2) == 2.0
    assert LossWeightRamp(_loss(), "crf", weight=2.0, warmup=1, ramp=1, stop=3).weight_after(3) == 0.0
    with pytest.raises(ValueError, match=r"stop \(1\) must be more than warmup \(1\)"):
        LossWeightRamp(_loss(), "crf", weight=1.0, warmup=1, stop=1)
    with pytest.raises(ValueError, match=r"stop must be an integer >= 0, got -2"):
        LossWeightRamp(_loss(), "crf", weight=1.0, stop=-2)


def test_attached_to_a_trainer_and_resumed_from_its_state():
    loss = _loss()
    schedule = LossWeightRamp(loss, "crf", weight=1.0, warmup=1, ramp=2)
    engine = Engine(lambda e, b: None)
    schedule.attach(engine)
    seen = []
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(loss.weights["crf"]))
    engine.run([0], max_epochs=4)
    assert seen == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    state = schedule.state_dict()
    other = _loss()
    restored = LossWeightRamp(other, "crf", weight=1.0, warmup=1, ramp=2)
    restored.load_state_dict(state)
    assert restored.epochs == 4 and other.weights["crf"] == 1.0


def test_bad_arguments_raise_with_names():
    with pytest.raises(ValueError, match=r"loss has no term named 'tv'; its terms are \['crf', 'pce'\]"):
        LossWeightRamp(_loss(), "tv", weight=1.0)
    with pytest.raises(ValueError, match=r"weight must be a finite number >= 0, got -1"):
        LossWeightRamp(_loss(), "crf", weight=-1)
    with pytest.raises(ValueError, match=r"warmup must be an integer >= 0, got 1.5"):
        LossWeightRamp(_loss(), "crf", weight=1.0, warmup=1.5)
    with pytest.raises(TypeError, match="CompositeLoss"):
        LossWeightRamp(PartialCrossEntropyLoss(), "crf", weight=1.0)
    schedule = LossWeightRamp(_loss(), "crf", weight=1.0)
    with pytest.raises(ValueError, match="the checkpoint ramps the term 'tv'"):
        schedule.load_state_dict({"term": "tv", "epochs": 1})
