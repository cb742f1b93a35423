from wss_monai.metrics.lesion import lesion_metrics
from wss_monai.metrics.trimap import TRIMAP_WIDTHS, boundary_pixels, trimap_bands, trimap_metrics
from wss_monai.metrics.volume import spacing_from_affine, volume_metrics

__all__ = [
    "TRIMAP_WIDTHS",
    "boundary_pixels",
    "lesion_metrics",
    "spacing_from_affine",
    "trimap_bands",
    "trimap_metrics",
    "volume_metrics",
]
