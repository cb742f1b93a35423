"""Interactive refinement (wss_monai.label.refine): seeds hard, both solvers, binary target mode, 2D and 3D, speed."""

import numpy as np
import pytest

from wss_monai.constants import UNLABELLED
from wss_monai.label import refine_segmentation


def _two_regions(shape):
    """An image with a bright square and probabilities that are unsure everywhere (class 0 slightly ahead)."""
    image = np.zeros((1, *shape), dtype=np.float32)
    image[:, shape[0] // 4 : 3 * shape[0] // 4, shape[1] // 4 : 3 * shape[1] // 4] = 1.0
    probabilities = np.stack([np.full(shape, 0.51), np.full(shape, 0.49)]).astype(np.float32)
    return image, probabilities


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 4)])
@pytest.mark.parametrize("solver", ["graph_cut", "alpha_expansion"])
def test_a_click_fills_its_region_and_seeds_stay(shape, solver):
    image, probabilities = _two_regions(shape)
    seeds = np.full(shape, UNLABELLED)
    seeds[(8, 8) + (0,) * (len(shape) - 2)] = 1
    seeds[(0, 0) + (0,) * (len(shape) - 2)] = 0
    labels, info = refine_segmentation(probabilities, image, seeds, smoothness=4.0, solver=solver)
    assert info["solver"] == solver and info["seeds"] == 2
    assert (labels == (image[0] > 0.5)).all()
    assert probabilities.argmax(0).sum() == 0  # inputs not mutated


def test_multiclass_uses_alpha_expansion_and_target_mode_moves_one_class():
    shape = (12, 12, 3)
    image = np.zeros((1, *shape), dtype=np.float32)
    image[:, 6:] = 1.0
    probabilities = np.stack([np.full(shape, 0.34), np.full(shape, 0.33), np.full(shape, 0.33)])
    seeds = np.full(shape, UNLABELLED)
    seeds[9, 6, 1], seeds[2, 6, 1] = 2, 1
    labels, info = refine_segmentation(probabilities, image, seeds, smoothness=10.0)
    assert info["solver"] == "alpha_expansion" and (labels[6:] == 2).all() and (labels[:6] == 1).all()
    seeds[2, 6, 1] = 0
    labels, info = refine_segmentation(probabilities, image, seeds, smoothness=40.0, target=2)
    assert info["solver"] == "graph_cut" and (labels[6:] == 2).all() and (labels[:6] == 0).all()


def test_bad_inputs_raise():
    image, probabilities = _two_regions((8, 8))
    with pytest.raises(ValueError, match=r"seeds of shape \(4, 4\) do not match the spatial shape \(8, 8\)"):
        refine_segmentation(probabilities, image, np.full((4, 4), UNLABELLED))
    with pytest.raises(ValueError, match=r"seed classes \[5\] are outside range\(2\)"):
        refine_segmentation(probabilities, image, np.full((8, 8), 5))
    with pytest.raises(ValueError, match="solver must be one of"):
        refine_segmentation(probabilities, image, np.full((8, 8), UNLABELLED), solver="icm")
