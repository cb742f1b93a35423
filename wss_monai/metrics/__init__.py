from wss_monai.metrics.volume import spacing_from_affine, volume_metrics

__all__ = ["spacing_from_affine", "volume_metrics"]
