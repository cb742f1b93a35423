"""Bundle runs as MONAI bundles: a run records the config it ran with, inference and export read it back."""

from wss_monai.bundle.box_recipe import BOX_LOSSES, BOX_MASKED_LOSSES, BOX_SOURCES, BoxRecipe, box_recipe
from wss_monai.bundle.config_files import ENGINE_FRAGMENTS, KINDS, bundle_configs
from wss_monai.bundle.overrides import check_overrides
from wss_monai.bundle.recipes import (
    CONSTRAINT_DIMS,
    SIZE_BOUNDS,
    SizeRecipe,
    choose,
    foreground_labels,
    foreground_sampler,
    size_recipe,
)
from wss_monai.bundle.record import (
    BEST_CHECKPOINT,
    FINAL_CHECKPOINT,
    RUN_CONFIG,
    RUN_METADATA,
    find_running_parser,
    record_run_config,
    write_json_atomic,
)
from wss_monai.bundle.trained_run import TrainedRun

__all__ = [
    "BOX_LOSSES",
    "BOX_MASKED_LOSSES",
    "BOX_SOURCES",
    "BoxRecipe",
    "box_recipe",
    "BEST_CHECKPOINT",
    "CONSTRAINT_DIMS",
    "ENGINE_FRAGMENTS",
    "FINAL_CHECKPOINT",
    "KINDS",
    "RUN_CONFIG",
    "RUN_METADATA",
    "SIZE_BOUNDS",
    "SizeRecipe",
    "TrainedRun",
    "bundle_configs",
    "check_overrides",
    "choose",
    "find_running_parser",
    "foreground_labels",
    "foreground_sampler",
    "record_run_config",
    "size_recipe",
    "write_json_atomic",
]
