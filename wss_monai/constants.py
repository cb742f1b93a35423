"""Conventions shared by every module.

Weak label maps (scribbles, points) are channel-first integer maps ``(1, *spatial)`` holding a
class index where a voxel is annotated and :data:`UNLABELLED` elsewhere.
"""

UNLABELLED = -1
"""Value of a voxel that carries no annotation in a weak label map."""

ACDC_CLASSES = ("background", "rv", "myo", "lv")
"""ACDC label indices: 0 background, 1 right ventricle, 2 myocardium, 3 left-ventricle cavity."""
