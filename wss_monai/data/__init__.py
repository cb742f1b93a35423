"""Dataset readers, input checks and synthetic phantoms.

The functions are imported on first access, so that ``python -m wss_monai.data.acdc`` and
``python -m wss_monai.data.phantoms`` run their module without importing it twice.
"""

from __future__ import annotations

import importlib
from typing import Any

from wss_monai.data.image_readers import register_readers

register_readers()  # MetaImage (.mhd) through SimpleITK for every LoadImage

_EXPORTS = {
    "find_acdc_cases": "acdc",
    "make_acdc_datalist": "acdc",
    "split_by_patient": "acdc",
    "EmptyScribbleError": "checks",
    "assert_finite": "checks",
    "check_case": "checks",
    "validate_cases": "checks",
    "make_cardiac_phantoms": "phantoms",
    "reference_size_bounds": "reference",
    "VolumeSliceDataset": "slices",
    "VolumeBatchSampler": "samplers",
    "ForegroundOversampler": "samplers",
    "DistributedBatchSampler": "samplers",
    "WholeVolumeDataset": "volumes",
    "PadDepthCollate": "volumes",
    "find_isles_cases": "isles",
    "make_isles_datalist": "isles",
    "validate_multichannel_cases": "isles",
    "find_wmh_cases": "wmh",
    "make_wmh_datalist": "wmh",
    "wmh_ignore_mask": "wmh",
    "SplitIgnoreLabel": "wmh",
    "SplitIgnoreLabeld": "wmh",
    "make_isles_phantoms": "lesion_phantoms",
    "make_wmh_phantoms": "lesion_phantoms",
    "find_wmh_inputs": "lesion_inputs",
    "TwoCircles": "toy_circles",
    "TwoCirclesDataset": "toy_circles",
    "make_two_circles": "toy_circles",
    "write_two_circles": "toy_circles",
    "load_two_circles": "toy_circles",
    "make_hybrid_datalist": "hybrid",
    "make_hybrid_acdc_datalist": "hybrid_acdc",
    "repeat_full_cases": "hybrid_acdc",
    "InputFailures": "tolerant",
    "SkipFailuresDataset": "tolerant",
    "AtomicNibabelWriter": "writers",
    "SimpleITKReader": "image_readers",
    "find_promise12_cases": "promise12",
    "find_promise12_inputs": "promise12",
    "make_promise12_datalist": "promise12",
    "make_promise12_phantoms": "prostate_phantoms",
    "find_atlas_cases": "atlas",
    "find_atlas_inputs": "atlas",
    "make_atlas_datalist": "atlas",
    "make_atlas_phantoms": "atlas_phantoms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
