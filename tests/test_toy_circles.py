"""The two-circles toy set of the log-barrier paper."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from wss_monai.data.toy_circles import (
    TwoCircles,
    TwoCirclesDataset,
    load_two_circles,
    main,
    make_two_circles,
    write_two_circles,
)
from wss_monai.losses.inequality import InequalityConstraintLoss, soft_centroid

SIZE = (48, 64)
RADII = (4.0, 8.0)


def small(num: int = 6, **kwargs) -> TwoCircles:
    return make_two_circles(
        num, size=kwargs.pop("size", SIZE), radius_range=kwargs.pop("radius_range", RADII), **kwargs
    )


def disc(shape, centre, radius) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def test_shapes_dtypes_and_defaults():
    circles = make_two_circles(2, seed=1)
    assert circles.images.shape == (2, 1, 128, 128) and circles.images.dtype == np.float32
    assert circles.labels.shape == (2, 1, 128, 128) and circles.labels.dtype == np.uint8
    assert circles.size_bounds.shape == (2, 1, 1, 2) and circles.size_bounds.dtype == np.float32
    assert circles.centroid_bounds.shape == (2, 1, 2, 2) and circles.centroid_bounds.dtype == np.float32
    assert set(np.unique(circles.labels)) == {0, 1}
    # default radius range: 8-16 % of the shorter side
    assert ((circles.radii >= 0.08 * 128) & (circles.radii <= 0.16 * 128)).all()
    assert make_two_circles(1, size=40, radius_range=(3, 4)).images.shape == (1, 1, 40, 40)


def test_deterministic_by_seed_and_per_image():
    a, b = small(seed=3), small(seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.images, small(seed=4).images)
    # image i depends only on (seed, i): a prefix and a shifted draw give the same images
    np.testing.assert_array_equal(small(3, seed=3).images, a.images[:3])
    shifted = small(2, seed=3, first_index=4)
    np.testing.assert_array_equal(shifted.labels, a.labels[4:])
    np.testing.assert_array_equal(shifted.centroid_bounds, a.centroid_bounds[4:])


def test_darker_circle_is_the_label_and_both_discs_are_equal():
    circles = small(8, seed=0, noise_std=0.0, target_intensity=0.3, distractor_intensity=0.8, background_intensity=0.1)
    for n in range(8):
        label = circles.labels[n, 0].astype(bool)
        other = disc(SIZE, circles.distractor_centroids[n], circles.radii[n])
        target = disc(SIZE, circles.centroids[n], circles.radii[n])
        np.testing.assert_array_equal(label, target)
        assert not (label & other).any()  # no overlap
        assert label.sum() == other.sum() == circles.sizes[n]  # same radius, same pixel count
        image = circles.images[n, 0]
        np.testing.assert_allclose(image[label], 0.3)
        np.testing.assert_allclose(image[other], 0.8)
        np.testing.assert_allclose(image[~label & ~other], 0.1)


def test_noise_keeps_the_target_darker():
    circles = small(8, seed=5, noise_std=0.1)
    for n in range(8):
        label = circles.labels[n, 0].astype(bool)
        other = disc(SIZE, circles.distractor_centroids[n], circles.radii[n])
        image = circles.images[n, 0]
        assert image[label].mean() < image[other].mean()
        residual = image[~label & ~other]
        assert residual.std() == pytest.approx(0.1, rel=0.2)


def test_no_overlap_and_inside_image():
    circles = make_two_circles(40, size=(40, 40), radius_range=(5, 9), seed=2, min_gap=3)
    distance = np.hypot(*(circles.centroids - circles.distractor_centroids).T)
    assert (distance >= 2 * circles.radii + 3).all()
    for centres in (circles.centroids, circles.distractor_centroids):
        margin = np.ceil(circles.radii)[:, None]
        assert (centres - margin >= 0).all() and (centres + margin <= 39).all()
    # a disc inside the image keeps its full pixel count (compare with a padded canvas)
    for n in range(5):
        big = disc((80, 80), circles.centroids[n] + 20, circles.radii[n]).sum()
        assert circles.sizes[n] == big


def test_bounds_are_ten_percent_and_twenty_pixels_around_the_truth():
    circles = small(6, seed=1)
    sizes = circles.labels.reshape(6, -1).sum(1)
    np.testing.assert_array_equal(circles.sizes, sizes)
    np.testing.assert_allclose(circles.size_bounds[:, 0, 0], np.stack([0.9 * sizes, 1.1 * sizes], 1), rtol=1e-6)
    true_centroids = np.stack([np.argwhere(circles.labels[n, 0]).mean(0) for n in range(6)])  # (row, col)
    np.testing.assert_allclose(circles.centroids, true_centroids, atol=1e-5)
    np.testing.assert_allclose(circles.centroid_bounds[:, 0, :, 0], true_centroids - 20, atol=1e-5)
    np.testing.assert_allclose(circles.centroid_bounds[:, 0, :, 1], true_centroids + 20, atol=1e-5)
    assert (circles.size_bounds[..., 0] <= sizes[:, None, None]).all()
    assert (circles.size_bounds[..., 1] >= sizes[:, None, None]).all()
    # same axis order as soft_centroid on the one-hot label
    onehot = torch.from_numpy(circles.labels[:, 0]).long()
    probs = torch.nn.functional.one_hot(onehot, 2).permute(0, 3, 1, 2).double()
    np.testing.assert_allclose(soft_centroid(probs, classes=[1])[:, 0].numpy(), true_centroids, atol=1e-6)
    custom = small(2, seed=1, size_margin=0.2, centroid_margin=5.0)
    assert custom.size_bounds[0, 0, 0, 1] == pytest.approx(1.2 * custom.sizes[0])
    assert custom.centroid_bounds[0, 0, 0, 1] - custom.centroids[0, 0] == pytest.approx(5.0)


def test_dataset_items_and_constraint_loss_on_the_true_label():
    # centres are >= 2r + 2 >= 10 px apart: a 3 px centroid margin excludes the distractor
    dataset = TwoCirclesDataset(small(4, seed=0, centroid_margin=3.0))
    assert len(dataset) == 4
    item = dataset[1]
    assert sorted(item) == ["centroid_bounds", "image", "index", "label", "size_bounds"]
    assert item["image"].shape == (1, *SIZE) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["index"] == 1
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["size_bounds"].shape == (4, 1, 1, 2) and batch["centroid_bounds"].shape == (4, 1, 2, 2)
    logits = 40.0 * torch.nn.functional.one_hot(batch["label"][:, 0], 2).permute(0, 3, 1, 2).double() - 20.0
    for key, function in (("size_bounds", "size"), ("centroid_bounds", "centroid")):
        loss = InequalityConstraintLoss(key=key, function=function, mode="penalty", classes=[1])
        assert loss(logits, batch).item() == pytest.approx(0.0, abs=1e-9)
    # the distractor disc breaks the centroid constraint
    wrong = torch.zeros_like(batch["label"][:, 0])
    for n in range(4):
        wrong[n] = torch.from_numpy(disc(SIZE, dataset.data.distractor_centroids[n], dataset.data.radii[n]))
    wrong_logits = 40.0 * torch.nn.functional.one_hot(wrong, 2).permute(0, 3, 1, 2).double() - 20.0
    centroid = InequalityConstraintLoss(key="centroid_bounds", function="centroid", mode="penalty", classes=[1])
    size = InequalityConstraintLoss(key="size_bounds", function="size", mode="penalty", classes=[1])
    assert size(wrong_logits, batch).item() == pytest.approx(0.0, abs=1e-6)
    per_image = InequalityConstraintLoss(
        key="centroid_bounds", function="centroid", mode="penalty", classes=[1], reduction="none"
    )
    assert (per_image(wrong_logits, batch) > 0).all()
    assert centroid(wrong_logits, batch).item() > 0


def test_dataset_input_not_mutated_and_transform_applied():
    circles = small(2, seed=0)
    before = circles.images.copy()
    dataset = TwoCirclesDataset(circles, transform=lambda d: {**d, "image": d["image"] * 0})
    assert dataset[0]["image"].abs().sum() == 0
    np.testing.assert_array_equal(circles.images, before)


def test_write_load_roundtrip_and_split(tmp_path):
    paths = write_two_circles(tmp_path / "toy", num_train=3, num_val=2, seed=7, size=SIZE, radius_range=RADII)
    assert sorted(paths) == ["training", "validation"]
    train, val = load_two_circles(paths["training"]), load_two_circles(paths["validation"])
    together = small(5, seed=7)
    np.testing.assert_array_equal(train.images, together.images[:3])
    np.testing.assert_array_equal(val.labels, together.labels[3:])
    with np.load(paths["validation"]) as data:
        settings = json.loads(str(data["settings"]))
    assert settings["first_index"] == 3 and settings["seed"] == 7 and settings["size"] == list(SIZE)
    assert len(TwoCirclesDataset(paths["training"])) == 3
    only_train = write_two_circles(tmp_path / "b", num_train=1, num_val=0, size=SIZE, radius_range=RADII)
    assert sorted(only_train) == ["training"]


def test_cli(tmp_path):
    paths = main(["--output_dir", str(tmp_path), *"--num_train 2 --num_val 1 --size 32 40 --radius_range 3 5".split()])
    assert load_two_circles(paths["validation"]).images.shape == (1, 1, 32, 40)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_images": 0}, r"num_images must be an integer >= 1, got 0"),
        ({"size": (4, 40)}, r"size must be .* got \(4, 40\)"),
        ({"size": (32, 32, 3)}, r"size must be"),
        ({"radius_range": (20, 30)}, r"radius_range \(20, 30\) is too large"),
        ({"radius_range": (6, 3)}, r"radius_range must satisfy 1 <= low <= high"),
        ({"noise_std": -1.0}, r"noise_std must be a finite number >= 0, got -1.0"),
        ({"target_intensity": 1.0, "distractor_intensity": 0.5}, r"target_intensity must be below distractor"),
        ({"size_margin": 1.5}, r"size_margin must be in \[0, 1\], got 1.5"),
        ({"first_index": -1}, r"first_index must be an integer >= 0, got -1"),
    ],
)
def test_errors(kwargs, match):
    args = {"num_images": 2, "size": SIZE, "radius_range": RADII, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_two_circles(**args)


def test_io_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_two_circles(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match=r"not a two-circles file: arrays \['images'"):
        load_two_circles(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="data must be a TwoCircles"):
        TwoCirclesDataset(np.zeros(3))
    with pytest.raises(ValueError, match="num_val must be an integer >= 0, got -1"):
        write_two_circles(tmp_path, num_val=-1)
