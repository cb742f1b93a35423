"""wss_monai: weakly supervised 3D medical image segmentation on MONAI."""

from wss_monai.constants import UNLABELLED
from wss_monai.paths import bundle_dir, repository_root

__version__ = "0.1.0"
__all__ = ["UNLABELLED", "bundle_dir", "repository_root", "__version__"]
