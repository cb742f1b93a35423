from wss_monai.handlers.boundary_schedule import BOUNDARY_SCHEDULE_MODES, BoundaryWeightSchedule
from wss_monai.handlers.case_metrics import CaseMetricsWriter, PerCaseMetricsWriter, summarise_rows
from wss_monai.handlers.checkpoint import AtomicDiskSaver, SafeCheckpointSaver
from wss_monai.handlers.constraint_monitor import ConstraintMonitor
from wss_monai.handlers.deepcut import DeepCutProposals
from wss_monai.handlers.epoch_loss import EpochLossHistory
from wss_monai.handlers.final_validation import FinalValidation
from wss_monai.handlers.lagrangian import DualAscentHandler, DualVariables, hook_constraint_values
from wss_monai.handlers.lesion_case_metrics import LESION_COLUMNS, LesionMetricsWriter
from wss_monai.handlers.log_barrier import LogBarrierScheduler
from wss_monai.handlers.loss_terms import LossTermsLogger
from wss_monai.handlers.parameter_schedule import GeometricSchedule
from wss_monai.handlers.progress import TrainingProgressBar
from wss_monai.handlers.time_budget import TimeBudget
from wss_monai.handlers.timing import IterationTimer
from wss_monai.handlers.trust_region import TrustRegionProposals
from wss_monai.handlers.weight_ramp import LossWeightRamp

__all__ = [
    "AtomicDiskSaver",
    "FinalValidation",
    "SafeCheckpointSaver",
    "GeometricSchedule",
    "TrustRegionProposals",
    "DeepCutProposals",
    "BOUNDARY_SCHEDULE_MODES",
    "BoundaryWeightSchedule",
    "CaseMetricsWriter",
    "ConstraintMonitor",
    "DualAscentHandler",
    "EpochLossHistory",
    "DualVariables",
    "IterationTimer",
    "LESION_COLUMNS",
    "LesionMetricsWriter",
    "LogBarrierScheduler",
    "LossTermsLogger",
    "LossWeightRamp",
    "PerCaseMetricsWriter",
    "TimeBudget",
    "TrainingProgressBar",
    "hook_constraint_values",
    "summarise_rows",
]
