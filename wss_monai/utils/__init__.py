"""Small helpers called from the bundle configs."""

from wss_monai.utils.config import list_images, require_dir, resume
from wss_monai.utils.logging import setup_logging

__all__ = ["list_images", "require_dir", "resume", "setup_logging"]
