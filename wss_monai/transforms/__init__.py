"""Weak-label transforms: scribbles, points, boxes, tags (from labels or files), SEC localisation cues, size bounds,
real scribble files; load-time checks;
depth padding with a fill value per key (whole-volume 3D training).

Each generator reads a full ``(1, H, W[, D])`` class map and comes as an array transform plus a
thin ``…d`` dictionary wrapper; the random ones subclass ``monai.transforms.Randomizable`` and are
seeded with ``set_random_state``. Weak maps hold a class index where annotated and
:data:`wss_monai.constants.UNLABELLED` elsewhere.
"""

from wss_monai.transforms.bounds import SizeBounds, SizeBoundsd, common_size_bounds
from wss_monai.transforms.box_files import BoxFilesd, attach_box_files, read_box_json, read_box_mask
from wss_monai.transforms.box_segments import (
    BoxTable,
    Segments,
    box_segments,
    boxes_from_ids,
    segment_sums,
    sub_box_sums,
)
from wss_monai.transforms.boxes import (
    BoundingBoxes,
    BoundingBoxesd,
    BoxIds,
    BoxIdsd,
    BoxTarget,
    BoxTargetd,
    boxes_to_ids,
    check_boxes,
    tight_boxes,
)
from wss_monai.transforms.cues import CAMCues, CAMCuesd, CheckCueTagsd, cam_cues, check_cues_against_tags
from wss_monai.transforms.depth_pad import DivisibleDepthPad, DivisibleDepthPadd, padded_depth
from wss_monai.transforms.distance import SignedDistanceMap, SignedDistanceMapd, signed_distance
from wss_monai.transforms.input_checks import CheckFinited, CheckImageShaped, CheckLabelsd
from wss_monai.transforms.moment_bounds import CentroidBounds, CentroidBoundsd, centroid_bounds
from wss_monai.transforms.points import RandomPointDiscs, RandomPointDiscsd
from wss_monai.transforms.predicted_bounds import PredictedSizeBounds, PredictedSizeBoundsd
from wss_monai.transforms.proposals import UnlabelledLike, UnlabelledLiked
from wss_monai.transforms.pseudo_labels import PseudoLabels, PseudoLabelsd
from wss_monai.transforms.scribble_files import RemapUnlabelled, RemapUnlabelledd
from wss_monai.transforms.scribbles import (
    ErosionScribble,
    ErosionScribbled,
    ShortenScribble,
    ShortenScribbled,
    StrokeScribble,
    StrokeScribbled,
)
from wss_monai.transforms.tag_files import TagsFromFile, TagsFromFiled, case_name
from wss_monai.transforms.tags import ImageTags, ImageTagsd

__all__ = [
    "BoundingBoxes",
    "BoundingBoxesd",
    "BoxFilesd",
    "BoxIds",
    "BoxIdsd",
    "BoxTable",
    "BoxTarget",
    "BoxTargetd",
    "Segments",
    "attach_box_files",
    "box_segments",
    "boxes_from_ids",
    "segment_sums",
    "boxes_to_ids",
    "check_boxes",
    "read_box_json",
    "read_box_mask",
    "sub_box_sums",
    "tight_boxes",
    "UnlabelledLike",
    "UnlabelledLiked",
    "CAMCues",
    "CAMCuesd",
    "CheckCueTagsd",
    "TagsFromFile",
    "TagsFromFiled",
    "cam_cues",
    "case_name",
    "check_cues_against_tags",
    "CentroidBounds",
    "CentroidBoundsd",
    "centroid_bounds",
    "CheckFinited",
    "CheckImageShaped",
    "CheckLabelsd",
    "DivisibleDepthPad",
    "DivisibleDepthPadd",
    "ErosionScribble",
    "ErosionScribbled",
    "ImageTags",
    "ImageTagsd",
    "PredictedSizeBounds",
    "PredictedSizeBoundsd",
    "PseudoLabels",
    "PseudoLabelsd",
    "RandomPointDiscs",
    "RandomPointDiscsd",
    "RemapUnlabelled",
    "SignedDistanceMap",
    "SignedDistanceMapd",
    "RemapUnlabelledd",
    "SizeBounds",
    "SizeBoundsd",
    "ShortenScribble",
    "ShortenScribbled",
    "StrokeScribble",
    "StrokeScribbled",
    "common_size_bounds",
    "padded_depth",
    "signed_distance",
]
