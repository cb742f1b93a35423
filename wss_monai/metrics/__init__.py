from wss_monai.metrics.lesion import lesion_metrics
from wss_monai.metrics.volume import spacing_from_affine, volume_metrics

__all__ = ["lesion_metrics", "spacing_from_affine", "volume_metrics"]
