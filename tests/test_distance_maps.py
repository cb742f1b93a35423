import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from wss_monai.transforms.distance import SignedDistanceMap, SignedDistanceMapd, signed_distance


def _brute_force(mask: np.ndarray, spacing) -> np.ndarray:
    """φ by definition: ± distance from each voxel centre to the nearest voxel centre of the other side."""
    coords = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(mask.shape, spacing)], indexing="ij"), -1)
    points = coords.reshape(-1, mask.ndim)
    flat = mask.ravel()
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    to_inside = np.where(flat[None], dist, np.inf).min(1)
    to_outside = np.where(~flat[None], dist, np.inf).min(1)
    return np.where(flat, -to_outside, to_inside).reshape(mask.shape)


def test_strip_hand_values_sign_and_zero_on_the_faces():
    label = np.array([[[0, 0, 1, 1, 1, 1, 0, 0]]])  # (1, H=1, W=8)
    phi = SignedDistanceMap(num_classes=2)(label)
    assert phi.dtype == np.float32 and phi.shape == (1, 1, 8)
    assert phi[0, 0].tolist() == [2.0, 1.0, -1.0, -2.0, -2.0, -1.0, 1.0, 2.0]
    row, inside = phi[0, 0], label[0, 0] == 1
    assert (row[inside] < 0).all() and (row[~inside] > 0).all() and not (row == 0).any()
    # across each inside/outside face the two voxels hold -d and +d: the linear interpolation is 0 on the face
    faces = np.flatnonzero(np.diff(label[0, 0]))
    assert [row[i] + row[i + 1] for i in faces] == [0.0, 0.0]


def test_2d_hand_values_with_diagonals():
    label = np.zeros((1, 3, 3), int)
    label[0, 1, 1] = 1
    phi = SignedDistanceMap(num_classes=2)(label)[0]
    r2 = np.sqrt(2)
    np.testing.assert_allclose(phi, [[r2, 1, r2], [1, -1, 1], [r2, 1, r2]], rtol=1e-6)


def test_3d_volume_hand_values():
    label = np.zeros((1, 5, 5, 5), int)
    label[0, 1:4, 1:4, 1:4] = 1
    phi = SignedDistanceMap(num_classes=2, spatial_dims=3)(label)[0]
    assert phi[2, 2, 2] == -2.0  # centre of the cube: two voxels from the outside
    assert phi[1, 2, 2] == -1.0  # on a face of the cube
    assert phi[1, 1, 1] == -1.0
    assert phi[0, 2, 2] == 1.0
    assert phi[0, 0, 0] == pytest.approx(np.sqrt(3))  # corner of the volume to the corner of the cube
    assert phi[4, 4, 4] == pytest.approx(np.sqrt(3))


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (2.0, 0.5), (0.7, 3.0)])
def test_matches_the_definition_on_a_random_label_2d(spacing):
    rng = np.random.default_rng(0)
    label = (rng.random((1, 7, 9)) > 0.6).astype(np.int64)
    phi = SignedDistanceMap(num_classes=2, spacing=spacing)(label)[0]
    np.testing.assert_allclose(phi, _brute_force(label[0] == 1, spacing), rtol=1e-6)


def test_matches_the_definition_on_a_random_label_3d_anisotropic():
    rng = np.random.default_rng(1)
    label = (rng.random((1, 5, 6, 4)) > 0.7).astype(np.int64)
    spacing = (0.8, 1.5, 3.0)
    phi = SignedDistanceMap(num_classes=2, spatial_dims=3, spacing=spacing)(label)[0]
    np.testing.assert_allclose(phi, _brute_force(label[0] == 1, spacing), rtol=1e-6)


def test_anisotropic_spacing_scales_along_the_right_axis():
    strip = np.array([0, 0, 1, 1, 1, 0, 0, 0])
    rows = np.repeat(strip[:, None], 3, axis=1)[None]  # varies along axis 0 only
    cols = np.repeat(strip[None, :], 3, axis=0)[None]  # varies along axis 1 only
    unit_rows = SignedDistanceMap(num_classes=2)(rows)
    unit_cols = SignedDistanceMap(num_classes=2)(cols)
    aniso = SignedDistanceMap(num_classes=2, spacing=(2.0, 0.5))
    np.testing.assert_allclose(aniso(rows), 2.0 * unit_rows)
    np.testing.assert_allclose(aniso(cols), 0.5 * unit_cols)
    # a single number is used on every axis
    np.testing.assert_allclose(SignedDistanceMap(num_classes=2, spacing=3.0)(rows), 3.0 * unit_rows)


def test_spacing_from_the_metatensor_affine_and_metadata_kept():
    label = np.zeros((1, 8, 6), int)
    label[0, 2:5, 1:4] = 1
    affine = torch.diag(torch.tensor([2.0, 0.5, 1.0, 1.0], dtype=torch.float64))
    meta_label = MetaTensor(torch.as_tensor(label), affine=affine)
    phi = SignedDistanceMap(num_classes=2)(meta_label)
    assert isinstance(phi, MetaTensor) and phi.dtype == torch.float32
    assert torch.equal(phi.affine, meta_label.affine)
    expected = SignedDistanceMap(num_classes=2, spacing=(2.0, 0.5))(label)
    np.testing.assert_allclose(phi.numpy(), expected)
    assert not np.allclose(expected, SignedDistanceMap(num_classes=2)(label))  # the spacing was used
    # explicit spacing wins over the affine
    np.testing.assert_allclose(
        SignedDistanceMap(num_classes=2, spacing=1.0)(meta_label).numpy(), SignedDistanceMap(2)(label)
    )


def test_empty_and_full_masks_give_zero_maps():
    empty = np.zeros((1, 4, 5), int)
    full = np.ones((1, 4, 5), int)
    t = SignedDistanceMap(num_classes=2, include_background=True)
    out_empty, out_full = t(empty), t(full)
    assert out_empty.shape == (2, 4, 5)
    assert (out_empty == 0).all() and (out_full == 0).all()  # background full / foreground absent and reverse
    assert (signed_distance(np.zeros((3, 3, 3), bool), (1, 1, 1)) == 0).all()
    assert (signed_distance(np.ones((3, 3, 3), bool), (1, 1, 1)) == 0).all()


def test_absent_class_gets_a_zero_map_and_channels_follow_include_background():
    label = np.zeros((1, 6, 6), int)
    label[0, 1:3, 1:3] = 1
    label[0, 4:, 4:] = 3  # class 2 absent
    fg = SignedDistanceMap(num_classes=4)(label)
    assert fg.shape == (3, 6, 6)
    assert (fg[1] == 0).all()  # class 2
    assert (fg[0] != 0).all() and (fg[2] != 0).all()
    everything = SignedDistanceMap(num_classes=4, include_background=True)(label)
    assert everything.shape == (4, 6, 6)
    np.testing.assert_array_equal(everything[1:], fg)


def test_binary_background_map_is_the_opposite_of_the_foreground_map():
    rng = np.random.default_rng(2)
    label = (rng.random((1, 6, 7)) > 0.5).astype(int)
    phi = SignedDistanceMap(num_classes=2, include_background=True, spacing=(1.3, 0.4))(label)
    np.testing.assert_allclose(phi[0], -phi[1])


def test_per_slice_versus_volume():
    label = np.zeros((1, 5, 1, 3), int)
    label[0, 1:4, 0, 0] = 1  # slice 0: rows 1-3
    label[0, 2, 0, 2] = 1  # slice 1 empty, slice 2: row 2
    per_slice = SignedDistanceMap(num_classes=2, spatial_dims=2)(label)[0, :, 0]
    np.testing.assert_array_equal(per_slice[:, 0], [1, -1, -2, -1, 1])
    np.testing.assert_array_equal(per_slice[:, 1], 0)  # class absent from the slice
    np.testing.assert_array_equal(per_slice[:, 2], [2, 1, -1, 1, 2])
    # each slice is the 2D map of that slice alone
    for z in range(3):
        np.testing.assert_array_equal(
            per_slice[:, z], SignedDistanceMap(num_classes=2)(label[..., z])[0, :, 0], err_msg=f"slice {z}"
        )
    volume = SignedDistanceMap(num_classes=2, spatial_dims=3)(label)[0, :, 0]
    np.testing.assert_allclose(volume[:, 1], [np.sqrt(2), 1, 1, 1, np.sqrt(2)])  # distances across slices
    np.testing.assert_allclose(volume[:, 0], [1, -1, -1, -1, 1])  # an inside voxel next to the empty slice


def test_per_slice_uses_the_in_plane_spacing():
    label = np.zeros((1, 6, 6, 2), int)
    label[0, 2:4, 2:4, :] = 1
    three = SignedDistanceMap(num_classes=2, spatial_dims=2, spacing=(2.0, 0.5, 5.0))(label)
    two = SignedDistanceMap(num_classes=2, spatial_dims=2, spacing=(2.0, 0.5))(label)
    np.testing.assert_array_equal(three, two)
    assert three[0, 0, 2, 0] == 4.0 and three[0, 2, 0, 0] == 1.0
    affine = torch.diag(torch.tensor([2.0, 0.5, 5.0, 1.0], dtype=torch.float64))
    from_meta = SignedDistanceMap(num_classes=2, spatial_dims=2)(MetaTensor(torch.as_tensor(label), affine=affine))
    np.testing.assert_array_equal(from_meta.numpy(), two)


def test_types_and_no_mutation():
    label = np.zeros((1, 4, 4), int)
    label[0, 1:3, 1:3] = 1
    before = label.copy()
    out = SignedDistanceMap(num_classes=2)(torch.as_tensor(label))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_array_equal(label, before)


def test_dictionary_wrapper():
    label = np.zeros((1, 4, 4), int)
    label[0, 1:3, 1:3] = 1
    data = {"label": label, "image": np.zeros((1, 4, 4))}
    out = SignedDistanceMapd(keys="label", num_classes=2, spacing=(1.0, 2.0))(data)
    assert set(out) == {"label", "image", "dist_map"} and set(data) == {"label", "image"}
    np.testing.assert_array_equal(out["dist_map"], SignedDistanceMap(2, spacing=(1.0, 2.0))(label))
    with pytest.raises(ValueError, match="output_key can only be used with a single key"):
        SignedDistanceMapd(keys=["a", "b"], num_classes=2)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2, got 1"):
        SignedDistanceMap(num_classes=1)
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3, got 4"):
        SignedDistanceMap(num_classes=2, spatial_dims=4)
    with pytest.raises(
        ValueError, match=r"spacing must be None or 1 to 3 finite positive numbers \(mm\), got \(1.0, -2.0\)"
    ):
        SignedDistanceMap(num_classes=2, spacing=(1.0, -2.0))
    with pytest.raises(ValueError, match="spacing must be"):
        SignedDistanceMap(num_classes=2, spacing=(1, 1, 1, 1))
    with pytest.raises(
        ValueError, match=r"spacing \(1.0, 2.0\) must have one value per spatial axis of the label \(3\)"
    ):
        SignedDistanceMap(num_classes=2, spatial_dims=3, spacing=(1.0, 2.0))(np.zeros((1, 3, 3, 3), int))
    with pytest.raises(ValueError, match=r"label values must lie in \[0, 1\], got \[2\]"):
        SignedDistanceMap(num_classes=2)(np.full((1, 3, 3), 2))
    with pytest.raises(ValueError, match=r"label must have shape \(1, H, W\[, D\]\), got \(3, 3\)"):
        SignedDistanceMap(num_classes=2)(np.zeros((3, 3), int))


def test_docstring_examples_run():
    import doctest

    import wss_monai.transforms.distance as module

    assert doctest.testmod(module).failed == 0


def test_reference_convention_hand_values_inner_contour_at_zero():
    label = np.array([[[0, 0, 1, 1, 1, 1, 0, 0]]])
    phi = SignedDistanceMap(num_classes=2, convention="reference")(label)
    # the published one_hot2dist: outside d(p, G), inside -(d(p, Ω \ G) - 1)
    assert phi[0, 0].tolist() == [2.0, 1.0, 0.0, -1.0, -1.0, 0.0, 1.0, 2.0]
    faces = SignedDistanceMap(num_classes=2)(label)
    np.testing.assert_array_equal(phi[label == 0], faces[label == 0])  # outside unchanged
    np.testing.assert_array_equal(phi[label == 1], faces[label == 1] + 1.0)
    # the 1 is subtracted in the map's units: with 0.5 mm spacing the inner contour becomes +0.5 (positive inside)
    half = SignedDistanceMap(num_classes=2, spacing=0.5, convention="reference")(label)
    assert half[0, 0].tolist() == [1.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5, 1.0]


def test_reference_convention_in_the_dict_wrapper_and_3d():
    label = np.zeros((1, 5, 5, 5), int)
    label[0, 1:4, 1:4, 1:4] = 1
    d = SignedDistanceMapd(keys="label", num_classes=2, spatial_dims=3, convention="reference")({"label": label})
    phi = d["dist_map"][0]
    assert phi[2, 2, 2] == -1.0 and phi[1, 2, 2] == 0.0 and phi[0, 2, 2] == 1.0
    np.testing.assert_allclose(signed_distance(label[0] == 1, (1, 1, 1), "reference"), phi, rtol=1e-6)


def test_bad_convention_raises():
    with pytest.raises(ValueError, match=r"convention must be one of \('faces', 'reference'\), got 'paper'"):
        SignedDistanceMap(num_classes=2, convention="paper")
    with pytest.raises(ValueError, match="convention must be one of"):
        signed_distance(np.ones((2, 2), bool), (1.0, 1.0), convention=None)
