"""Weak-supervision loss terms, each called as ``term(logits, batch)``."""

from wss_monai.losses.adm import ADMLoss
from wss_monai.losses.base import WeakLoss, reduce_per_image
from wss_monai.losses.boundary import BoundaryLoss
from wss_monai.losses.boxes import BOX_MODES, BOX_TERMS, BoxConstraintLoss
from wss_monai.losses.composite import CompositeLoss, TargetLoss
from wss_monai.losses.constraints import (
    CONSTRAINT_MODES,
    LAGRANGIAN_MODES,
    log_barrier_extension,
    quadratic_penalty,
)
from wss_monai.losses.dense_crf import DenseCRFLoss, bilateral_features, dense_crf_energy
from wss_monai.losses.gated_crf import GatedCRFLoss
from wss_monai.losses.grid_crf import GridPottsLoss, PottsEnergy, potts_edge_weights, potts_energy
from wss_monai.losses.inequality import (
    InequalityConstraintLoss,
    LagrangianProposalLoss,
    central_moment,
    fractional_moment,
    lagrangian_proposal,
    soft_centroid,
    soft_size,
)
from wss_monai.losses.masked import IGNORE_MODES, IgnoreMaskedLoss
from wss_monai.losses.partial_ce import PartialCrossEntropyLoss
from wss_monai.losses.proposals import batch_case_names, proposal_problems
from wss_monai.losses.sec import (
    ConstrainLoss,
    ExpansionLoss,
    TagClassificationLoss,
    dense_crf_mean_field,
    global_weighted_rank_pooling,
)
from wss_monai.losses.supervision_switch import SupervisionSwitchLoss, supervision_mask
from wss_monai.losses.trust_region import RobustTrustRegionLoss, robust_trust_region_loss

__all__ = [
    "BOX_MODES",
    "BOX_TERMS",
    "BoxConstraintLoss",
    "DenseCRFLoss",
    "GatedCRFLoss",
    "GridPottsLoss",
    "PottsEnergy",
    "bilateral_features",
    "dense_crf_energy",
    "potts_edge_weights",
    "potts_energy",
    "BoundaryLoss",
    "ConstrainLoss",
    "ExpansionLoss",
    "TagClassificationLoss",
    "dense_crf_mean_field",
    "global_weighted_rank_pooling",
    "IGNORE_MODES",
    "IgnoreMaskedLoss",
    "InequalityConstraintLoss",
    "LagrangianProposalLoss",
    "central_moment",
    "fractional_moment",
    "lagrangian_proposal",
    "soft_centroid",
    "soft_size",
    "supervision_mask",
    "CONSTRAINT_MODES",
    "LAGRANGIAN_MODES",
    "CompositeLoss",
    "PartialCrossEntropyLoss",
    "SupervisionSwitchLoss",
    "TargetLoss",
    "WeakLoss",
    "log_barrier_extension",
    "quadratic_penalty",
    "reduce_per_image",
    "ADMLoss",
    "RobustTrustRegionLoss",
    "batch_case_names",
    "proposal_problems",
    "robust_trust_region_loss",
]
