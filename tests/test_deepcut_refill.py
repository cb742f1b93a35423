"""DeepCut's proposals keep every box's class: a class the CRF empties gets its box target back."""

import numpy as np
import pytest

from wss_monai.handlers import DeepCutProposals
from wss_monai.solvers import DenseCRFProblem


def _handler(min_fill: float) -> DeepCutProposals:
    handler = DeepCutProposals.__new__(DeepCutProposals)  # finish() needs only these two attributes
    handler.min_fill, handler.refilled = min_fill, 0
    return handler


def _problem() -> DenseCRFProblem:
    """An 8 x 8 slice: a class-2 box (rows 1-6, columns 1-6) around a class-3 box (rows 3-4, columns 3-4), and a
    class-1 box (rows 0-1, columns 5-7) overlapping the class-2 box's corner."""
    allowed = np.zeros((4, 8, 8), bool)
    allowed[0] = True
    allowed[2, 1:7, 1:7] = True
    allowed[3, 3:5, 3:5] = True
    allowed[1, 0:2, 5:8] = True
    return DenseCRFProblem("patient001 slice 3", np.full((4, 8, 8), 0.25), np.zeros((1, 8, 8)), allowed)


def test_emptied_nested_classes_get_their_box_target_back():
    problem = _problem()
    labels = np.zeros((8, 8), np.int64)
    labels[0, 5:8] = 1  # class 1 keeps 3 of its 6 box voxels
    refilled = _handler(0.1).finish(problem, labels)
    expected = np.zeros((8, 8), np.int64)
    expected[1:7, 1:7] = 2
    expected[3:5, 3:5] = 3  # the inner box wins, as in BoxTarget
    expected[0, 5:8] = 1
    expected[1, 5:7] = 2  # class 1 was not emptied: only the background of its box was refilled by class 2
    assert refilled.tolist() == expected.tolist()
    assert labels.sum() == 3  # the solver's array is not changed in place


def test_a_class_above_min_fill_is_kept_as_solved():
    problem = _problem()
    labels = np.zeros((8, 8), np.int64)
    labels[1:3, 1:7] = 2  # 12 of 36 box voxels: 0.33
    labels[3, 3] = 3  # 1 of 4: 0.25
    labels[0, 6] = 1  # 1 of 6: 0.17
    handler = _handler(0.1)
    assert np.array_equal(handler.finish(problem, labels), labels) and handler.refilled == 0
    handler = _handler(0.3)  # now class 3 (0.25) and class 1 (0.17) are under the share, class 2 (0.33) is not
    refilled = handler.finish(problem, labels)
    assert handler.refilled == 1
    expected = labels.copy()
    expected[3:5, 3:5] = 3
    expected[0, 5:8] = 1
    expected[1, 7] = 1  # (1, 5) and (1, 6) stay class 2: only background (and emptied classes) is refilled
    assert refilled.tolist() == expected.tolist()


@pytest.mark.parametrize("min_fill", [-0.1, 1.0, 2])
def test_min_fill_out_of_range_is_refused(min_fill):
    with pytest.raises(ValueError, match=r"min_fill must lie in \[0, 1\), got"):
        DeepCutProposals(None, None, None, min_fill=min_fill)
