"""MONAI Label in the loop: annotators' scribbles, boxes and labels train a bundle; graph cuts refine in 3D.

This package needs only the project's own dependencies. The MONAI Label app itself (tasks, checked
datastore, server) is :mod:`wss_monai.label.app`, which needs ``monailabel`` (the separate
``.venv-label`` environment, ``scripts/setup_label_env.sh``); see ``docs/monai_label.md``.
"""

from wss_monai.label.bootstrap import untrained_run
from wss_monai.label.boxes import BOX_RECIPES, box_recipe, boxes_from_json
from wss_monai.label.checks import LabelCheckError, check_same_grid, check_values, read_volume
from wss_monai.label.datalist import make_label_datalist, read_label_datalist
from wss_monai.label.refine import SOLVER_CHOICES, refine_segmentation
from wss_monai.label.scribbles import PRESETS, ScribbleConvention
from wss_monai.label.training import LABEL_OVERLAY, REGULARISERS, label_training_command, load_weights

__all__ = [
    "BOX_RECIPES",
    "LABEL_OVERLAY",
    "PRESETS",
    "REGULARISERS",
    "SOLVER_CHOICES",
    "LabelCheckError",
    "ScribbleConvention",
    "box_recipe",
    "boxes_from_json",
    "check_same_grid",
    "check_values",
    "label_training_command",
    "load_weights",
    "make_label_datalist",
    "read_label_datalist",
    "read_volume",
    "refine_segmentation",
    "untrained_run",
]
