"""Contract shared by every weak-label transform: run over all of them at once.

Input not mutated, seeded result reproducible, output shape / dtype / array type, dictionary
wrappers equal to their array transform, docstring examples run.
"""

from __future__ import annotations

import copy
import doctest
import importlib

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Randomizable

from wss_monai.constants import UNLABELLED
from wss_monai.transforms import (
    ErosionScribble,
    ErosionScribbled,
    ImageTags,
    ImageTagsd,
    RandomPointDiscs,
    RandomPointDiscsd,
    RemapUnlabelled,
    RemapUnlabelledd,
    SizeBounds,
    SizeBoundsd,
    StrokeScribble,
    StrokeScribbled,
)

K = 4
COMMON = [[100, 500], [10, 80], [10, 80], [10, 80]]


def label_3d() -> np.ndarray:
    """(1, 24, 24, 3) ACDC-like label; the last slice has no class 1."""
    yy, xx = np.mgrid[:24, :24]
    r = np.hypot(yy - 12, xx - 10)
    out = np.zeros((1, 24, 24, 3), dtype=np.int64)
    for z in range(3):
        out[0, r < 7 - z, z] = 2
        out[0, r < 4 - z, z] = 3
        if z < 2:
            out[0, 4:20, 19:22, z] = 1
    return out


# name -> (factory, output kind): "map" keeps the input shape, "tags" (K[, D]), "bounds" (K, 2[, D])
ARRAY = {
    "erosion2d": (lambda: ErosionScribble(K, kernel_size=4), "map"),
    "erosion3d": (lambda: ErosionScribble(K, kernel_size=3, spatial_dims=3), "map"),
    "stroke2d": (lambda: StrokeScribble(K, length_fraction=0.5, width=2, background_margin=2), "map"),
    "stroke3d": (lambda: StrokeScribble(K, length_fraction=0.5, spatial_dims=3, background_margin=2), "map"),
    "points2d": (lambda: RandomPointDiscs(K, radius=2, num_points=2), "map"),
    "points3d": (lambda: RandomPointDiscs(K, radius=2, spatial_dims=3), "map"),
    "tags2d": (lambda: ImageTags(K, spatial_dims=2), "tags"),
    "tags3d": (lambda: ImageTags(K, spatial_dims=3), "tags3"),
    "bounds_tags": (lambda: SizeBounds(K, mode="tags"), "bounds"),
    "bounds_common": (lambda: SizeBounds(K, mode="common", common_bounds=COMMON), "bounds"),
    "bounds_individual3d": (lambda: SizeBounds(K, mode="individual", spatial_dims=3), "bounds3"),
    "remap": (lambda: RemapUnlabelled(unlabelled_value=4, num_classes=K), "map"),
}
DICT = {
    "erosion2d": lambda: ErosionScribbled("label", num_classes=K, kernel_size=4, output_key="out"),
    "erosion3d": lambda: ErosionScribbled("label", num_classes=K, kernel_size=3, spatial_dims=3, output_key="out"),
    "stroke2d": lambda: StrokeScribbled(
        "label", num_classes=K, length_fraction=0.5, width=2, background_margin=2, output_key="out"
    ),
    "stroke3d": lambda: StrokeScribbled(
        "label", num_classes=K, length_fraction=0.5, spatial_dims=3, background_margin=2, output_key="out"
    ),
    "points2d": lambda: RandomPointDiscsd("label", num_classes=K, radius=2, num_points=2, output_key="out"),
    "points3d": lambda: RandomPointDiscsd("label", num_classes=K, radius=2, spatial_dims=3, output_key="out"),
    "tags2d": lambda: ImageTagsd("label", num_classes=K, spatial_dims=2, output_key="out"),
    "tags3d": lambda: ImageTagsd("label", num_classes=K, spatial_dims=3, output_key="out"),
    "bounds_tags": lambda: SizeBoundsd("label", num_classes=K, mode="tags", output_key="out"),
    "bounds_common": lambda: SizeBoundsd("label", num_classes=K, mode="common", common_bounds=COMMON, output_key="out"),
    "bounds_individual3d": lambda: SizeBoundsd(
        "label", num_classes=K, mode="individual", spatial_dims=3, output_key="out"
    ),
    "remap": lambda: RemapUnlabelledd("label", unlabelled_value=4, num_classes=K, output_key="out"),
}
RANDOM = {"stroke2d", "stroke3d", "points2d", "points3d"}


def make_input(kind: str, three_d: bool):
    array = label_3d() if three_d else label_3d()[..., 0]
    if kind == "numpy":
        return array
    if kind == "torch":
        return torch.as_tensor(array, dtype=torch.uint8)
    return MetaTensor(torch.as_tensor(array).float(), meta={"filename_or_obj": "label.nii.gz"})


def expected_shape(kind: str, shape: tuple) -> tuple:
    per_slice = len(shape) == 4 and not kind.endswith("3")
    extra = (shape[-1],) if per_slice else ()
    if kind == "map":
        return shape
    if kind.startswith("tags"):
        return (K, *extra)
    return (K, 2, *extra)


def build(name: str, seed: int = 0):
    transform = ARRAY[name][0]()
    if isinstance(transform, Randomizable):
        transform.set_random_state(seed)
    return transform


@pytest.mark.parametrize("three_d", [False, True], ids=["2d", "3d"])
@pytest.mark.parametrize("kind", ["numpy", "torch", "meta"])
@pytest.mark.parametrize("name", sorted(ARRAY))
def test_array_contract(name, kind, three_d):
    label = make_input(kind, three_d)
    before = copy.deepcopy(label)
    out = build(name)(label)
    # not mutated
    assert type(label) is type(before)
    np.testing.assert_array_equal(np.asarray(label), np.asarray(before))
    # type, dtype and shape
    if kind == "numpy":
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
    else:
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        if kind == "meta" and ARRAY[name][1] == "map":
            assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "label.nii.gz"
    assert tuple(out.shape) == expected_shape(ARRAY[name][1], tuple(label.shape))
    # reproducible: same seed, same output
    again = build(name)(label)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(again))
    # weak maps only hold the true class or UNLABELLED
    if ARRAY[name][1] == "map":
        weak, full = np.asarray(out), np.asarray(label)
        on = weak != UNLABELLED
        assert on.any() and np.all(weak[on] == full[on])


@pytest.mark.parametrize("name", sorted(ARRAY))
def test_randomizable_exactly_when_random(name):
    assert isinstance(build(name), Randomizable) == (name in RANDOM)
    assert isinstance(DICT[name](), Randomizable) == (name in RANDOM)


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_seed_changes_the_output(name):
    label = label_3d()
    outputs = {build(name, seed).__call__(label).tobytes() for seed in range(4)}
    assert len(outputs) > 1


@pytest.mark.parametrize("name", sorted(DICT))
def test_dict_wrapper_contract(name):
    label = MetaTensor(torch.as_tensor(label_3d()), meta={"filename_or_obj": "label.nii.gz"})
    data = {"label": label, "other": 1}
    before = copy.deepcopy(label)
    transform = DICT[name]()
    pipeline = Compose([transform]).set_random_state(11)
    out = pipeline(data)
    assert set(data) == {"label", "other"} and data["label"] is label  # input dict untouched
    torch.testing.assert_close(label, before)
    assert out["label"] is label and out["other"] == 1
    again = Compose([DICT[name]()]).set_random_state(11)(data)
    torch.testing.assert_close(out["out"], again["out"])
    # the wrapper computes what its array transform computes
    if isinstance(transform, Randomizable):
        transform.set_random_state(3)
        array = build(name, 3)
    else:
        array = build(name)
    torch.testing.assert_close(transform(data)["out"], array(label))


@pytest.mark.parametrize("name", sorted(DICT))
def test_dict_wrapper_output_key_rules(name):
    cls = type(DICT[name]())
    kwargs = {"num_classes": K, **({"unlabelled_value": 4} if name == "remap" else {})}
    with pytest.raises(ValueError, match=r"output_key can only be used with a single key, got keys=\['a', 'b'\]"):
        cls(keys=["a", "b"], output_key="x", **kwargs)
    in_place = cls(keys=["a", "b"], output_key=None, **kwargs)
    if isinstance(in_place, Randomizable):
        in_place.set_random_state(0)
    out = in_place({"a": label_3d(), "b": label_3d()})
    assert out["a"].dtype == np.float32 and out["b"].dtype == np.float32
    with pytest.raises(KeyError):
        cls(keys="missing", **kwargs)({"a": label_3d()})


@pytest.mark.parametrize("name", sorted(ARRAY))
def test_bad_input_shape_and_values(name):
    transform = build(name)
    what = "scribble" if name == "remap" else "label"
    with pytest.raises(ValueError, match=rf"{what} must have shape \(1, H, W\[, D\]\), got \(3, 4\)"):
        transform(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=rf"{what} must have shape \(1, H, W\[, D\]\), got \(2, 4, 4\)"):
        transform(torch.zeros((2, 4, 4)))
    bad = label_3d()
    bad[0, 0, 0, 0] = 7
    message = (
        r"scribble values must be 4 \(unlabelled\) or lie in \[0, 3\], got \[7\]"
        if name == "remap"
        else (r"label values must lie in \[0, 3\], got \[7\]")
    )
    with pytest.raises(ValueError, match=message):
        transform(bad)


@pytest.mark.parametrize("module", ["_slices", "scribbles", "points", "tags", "bounds", "scribble_files"])
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"wss_monai.transforms.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", sorted(n for n in ARRAY if ARRAY[n][1] == "map"))
def test_background_only_label(name):
    label = np.zeros((1, 12, 12, 2), dtype=np.int64)
    out = build(name)(label)
    assert set(np.unique(out).tolist()) <= {0.0, UNLABELLED} and (out == 0).any()
