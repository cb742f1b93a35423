from wss_monai.handlers.case_metrics import CaseMetricsWriter, summarise_rows
from wss_monai.handlers.log_barrier import LogBarrierScheduler
from wss_monai.handlers.loss_terms import LossTermsLogger
from wss_monai.handlers.progress import TrainingProgressBar
from wss_monai.handlers.timing import IterationTimer

__all__ = [
    "CaseMetricsWriter",
    "IterationTimer",
    "LogBarrierScheduler",
    "LossTermsLogger",
    "TrainingProgressBar",
    "summarise_rows",
]
