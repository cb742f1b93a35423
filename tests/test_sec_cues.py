"""SEC localisation cues from CAMs, the CAM classifier, tags read from files, and cue/tag consistency checks."""

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from wss_monai import UNLABELLED
from wss_monai.networks import CAMClassifier, class_activation_maps
from wss_monai.transforms import (
    CAMCues,
    CAMCuesd,
    CheckCueTagsd,
    ImageTags,
    TagsFromFile,
    TagsFromFiled,
    cam_cues,
    check_cues_against_tags,
)

U = float(UNLABELLED)


def blob(center, size=9, sigma=1.5):
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    return torch.exp(-((y - center[0]) ** 2 + (x - center[1]) ** 2) / (2 * sigma**2))


def test_cues_on_a_synthetic_activation_map():
    cams = torch.stack([torch.zeros(9, 9), 3 * blob((2, 2)), 0.5 * blob((6, 6)), blob((4, 4))])  # K = 4
    tags = torch.tensor([1, 1, 1, 0])  # class 3 absent: its strong map must give no cue
    cues = cam_cues(cams, tags, foreground_fraction=0.5, background_fraction=0.05)[0]
    a1, a2 = blob((2, 2)), blob((6, 6))
    expected = torch.full((9, 9), U)
    expected[(a1 < 0.05) & (a2 < 0.05)] = 0
    expected[a1 >= 0.5] = 1
    expected[a2 >= 0.5] = 2  # scale of a map does not matter: each is normalised by its own max
    assert torch.equal(cues, expected)
    assert not (cues == 3).any()
    assert (cues == 0).sum() > 10 and (cues == U).sum() > 0


def test_conflicts_smallest_cue_wins_or_highest_score():
    wide = torch.linspace(1.0, 0.6, 6)  # class 1: rescaled to 1, 0.8, ..., 0
    narrow = torch.tensor([0.0, 0.0, 0.3, 1.0, 0.25, 0.0])  # class 2: a cue at columns 2-4
    cams = torch.stack([torch.zeros(6), wide, narrow])[:, None]  # (3, 1, 6)
    tags = torch.ones(3)
    smallest = cam_cues(cams, tags, foreground_fraction=0.2, background_fraction=0.1)[0, 0]
    assert smallest.tolist() == [1, 1, 2, 2, 2, 0]  # class 1 rescaled to 1 ... 0: column 5 is background
    score = cam_cues(cams, tags, foreground_fraction=0.2, background_fraction=0.1, conflict="score")[0, 0]
    assert score.tolist() == [1, 1, 1, 2, 2, 0]  # column 2: 0.6 against 0.3; column 4: 0.2 against 0.25


def test_background_only_slice_unlocated_class_and_per_slice_tags():
    cams = torch.zeros(3, 4, 4, 3)
    cams[1, :2, :2, 1] = 1.0
    cams[2, ..., 2] = -1.0  # slice 2: class 2 tagged present but its map is constant
    tags = torch.tensor([[1, 1, 1], [0, 1, 0], [0, 0, 1]])
    cues = cam_cues(cams, tags)[0]
    assert (cues[..., 0] == 0).all()  # only the background tag: background everywhere
    assert (cues[:2, :2, 1] == 1).all() and (cues[..., 1].sum() == 4)  # slice 1: its object, the rest background
    assert (cues[..., 2] == U).all()  # slice 2: its object is not located, so no certain background either


def test_cue_options_and_tags_checked():
    cams = torch.zeros(2, 3, 3)
    with pytest.raises(ValueError, match=r"background_fraction \(0.3\) must be below foreground_fraction \(0.2\)"):
        cam_cues(cams, torch.ones(2), background_fraction=0.3)
    with pytest.raises(ValueError, match="conflict must be one of"):
        cam_cues(cams, torch.ones(2), conflict="largest")
    with pytest.raises(ValueError, match=r"do not fit 2 classes"):
        cam_cues(cams, torch.ones(3))
    with pytest.raises(ValueError, match=r"'case9': slice\(s\) \[1\] have no tag at all"):
        cam_cues(torch.zeros(2, 3, 3, 2), torch.tensor([[1, 0], [0, 0]]), source="case9")


class FixedMaps(torch.nn.Module):
    """A 'classifier' whose CAM is the image itself repeated for every class (channel 0 stays 0)."""

    def __init__(self, classes):
        super().__init__()
        self.classes = classes
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        maps = x[:, :1].repeat(1, self.classes, *[1] * (x.ndim - 2))
        maps[:, 0] = 0
        return maps


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cam_cues_transform_from_a_classifier(spatial_dims):
    image = torch.zeros(1, 6, 6, 2)
    image[0, 1:3, 1:3, 0] = 1.0
    image[0, 3:5, 3:5, 1] = 1.0
    label = (image > 0).long()
    tags = ImageTags(num_classes=2, spatial_dims=spatial_dims)(label)
    out = CAMCuesd(classifier=FixedMaps(2), spatial_dims=spatial_dims)({"image": image, "tags": tags})
    assert out["cues"].shape == (1, 6, 6, 2)
    assert torch.equal(out["cues"] == 1, label.bool())
    assert (out["cues"][label == 0] == 0).all()
    assert torch.equal(out["image"], image)  # input unchanged


def test_cam_classifier_shapes_and_scores_are_the_mean_of_its_maps():
    torch.manual_seed(0)
    net = CAMClassifier(spatial_dims=3, in_channels=2, num_classes=3, channels=(4, 8), strides=(1, 2)).eval()
    x = torch.randn(2, 2, 8, 8, 4)
    maps = net(x)
    assert maps.shape == (2, 3, 8, 8, 4)
    # bilinear upsampling by 2 keeps the mean: the tag logits are the mean of the returned maps
    torch.testing.assert_close(net.scores(x), maps.flatten(2).mean(2), atol=1e-5, rtol=1e-5)
    assert class_activation_maps(net, x, batch_size=1).shape == maps.shape
    with pytest.raises(ValueError, match=r"input must have shape \(B, 2, \*spatial\)"):
        net(torch.zeros(1, 1, 8, 8, 4))


def write_tags(tmp_path, table):
    path = tmp_path / "tags.json"
    path.write_text(json.dumps(table))
    return path


def test_tags_from_file_matches_tags_from_the_label(tmp_path):
    label = np.zeros((1, 4, 4, 3), dtype=np.int64)
    label[0, :2, :2, 1] = 2
    label[0, 2:, 2:, 2] = 1
    path = write_tags(tmp_path, {"p1_frame01": [[0], [0, 2], [0, 1]]})
    image = MetaTensor(torch.zeros(1, 4, 4, 3), meta={"filename_or_obj": "/data/p1_frame01.nii.gz"})
    from_file = TagsFromFiled(tags_file=path, num_classes=3)({"image": image})["tags"]
    torch.testing.assert_close(from_file, ImageTags(num_classes=3)(torch.as_tensor(label)))
    path3 = write_tags(tmp_path, {"p1_frame01": [0, 1, 2]})
    assert TagsFromFile(path3, num_classes=3, spatial_dims=3)(image).tolist() == [1.0, 1.0, 1.0]


def test_tags_file_errors_name_the_case(tmp_path):
    image = MetaTensor(torch.zeros(1, 4, 4, 2), meta={"filename_or_obj": "/data/p7_frame02.nii.gz"})
    bad_class = TagsFromFile(write_tags(tmp_path, {"p7_frame02": [[0], [0, 5]]}), num_classes=4)
    with pytest.raises(
        ValueError, match=r"case 'p7_frame02' slice 1 lists class\(es\) \[5\], which the bundle does not"
    ):
        bad_class(image)
    no_tag = TagsFromFile(write_tags(tmp_path, {"p7_frame02": [[0, 1], []]}), num_classes=4)
    with pytest.raises(ValueError, match=r"case 'p7_frame02' slice 1 has no tag at all"):
        no_tag(image)
    short = TagsFromFile(write_tags(tmp_path, {"p7_frame02": [[0]]}), num_classes=4)
    with pytest.raises(ValueError, match=r"case 'p7_frame02' lists 1 slices but the image has 2"):
        short(image)
    missing = TagsFromFile(write_tags(tmp_path, {"other": [[0], [0]]}), num_classes=4)
    with pytest.raises(ValueError, match=r"no entry for case 'p7_frame02'"):
        missing(image)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TagsFromFile(tmp_path / "nope.json", num_classes=4)


def test_cue_file_contradicting_the_tags_names_case_slice_and_class():
    cues = MetaTensor(torch.full((1, 3, 3, 2), U), meta={"filename_or_obj": "/d/p3_frame01_scribble.nii.gz"})
    cues[0, 0, 0, 1] = 2
    cues[0, 1, 1, 0] = 0
    tags = torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])  # class 2 only in slice 0
    with pytest.raises(ValueError, match=r"cues of '/d/p3_frame01_scribble.nii.gz' mark class 2 in slice 1"):
        CheckCueTagsd(keys="cues", tags_key="tags")({"cues": cues, "tags": tags})
    tags[2, 1] = 1.0
    out = CheckCueTagsd()({"cues": cues, "tags": tags})  # consistent: passes, unchanged
    assert out["cues"] is cues
    with pytest.raises(ValueError, match=r"outside the 3 classes"):
        check_cues_against_tags(torch.full((1, 2, 2), 7.0), torch.ones(3), spatial_dims=3)


def test_cam_cues_transform_rejects_a_slice_without_tags():
    with pytest.raises(ValueError, match=r"slice\(s\) \[0\] have no tag at all"):
        CAMCues(FixedMaps(2))(torch.zeros(1, 4, 4, 2), torch.tensor([[0, 1], [0, 0]]))
