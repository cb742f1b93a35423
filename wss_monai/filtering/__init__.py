"""Fast Gaussian filtering in feature space (position and intensity), the engine of the dense CRF loss."""

from wss_monai.filtering.permutohedral import PermutohedralLattice

__all__ = ["PermutohedralLattice"]
