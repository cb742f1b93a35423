"""MONAI Label in the loop: annotators' scribbles, boxes and labels train a bundle; graph cuts refine in 3D.

This package needs only the project's own dependencies. The MONAI Label app itself (tasks, checked
datastore, server) is :mod:`wss_monai.label.app`, which needs ``monailabel`` (the separate
``.venv-label`` environment, ``scripts/setup_label_env.sh``); see ``docs/monai_label.md``.
"""

from wss_monai.label.bootstrap import untrained_run
from wss_monai.label.boxes import (
    BOX_RECIPE,
    box_file_json,
    boxes_from_json,
    check_box_json,
    check_box_mask,
    tight_box_json,
)
from wss_monai.label.checks import LabelCheckError, check_same_grid, check_values, read_volume
from wss_monai.label.datalist import (
    SUPERVISIONS,
    choose_supervision,
    make_label_datalist,
    read_label_datalist,
    require_box_files,
)
from wss_monai.label.refine import SOLVER_CHOICES, refine_segmentation
from wss_monai.label.scribbles import PRESETS, ScribbleConvention
from wss_monai.label.training import (
    BOX_OVERLAY,
    LABEL_OVERLAY,
    LABEL_RECIPES,
    REGULARISERS,
    label_training_command,
    load_weights,
)

__all__ = [
    "BOX_OVERLAY",
    "BOX_RECIPE",
    "LABEL_OVERLAY",
    "LABEL_RECIPES",
    "PRESETS",
    "REGULARISERS",
    "SOLVER_CHOICES",
    "SUPERVISIONS",
    "LabelCheckError",
    "ScribbleConvention",
    "box_file_json",
    "boxes_from_json",
    "check_box_json",
    "check_box_mask",
    "check_same_grid",
    "check_values",
    "choose_supervision",
    "label_training_command",
    "load_weights",
    "make_label_datalist",
    "read_label_datalist",
    "read_volume",
    "refine_segmentation",
    "require_box_files",
    "tight_box_json",
    "untrained_run",
]
