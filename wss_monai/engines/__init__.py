from wss_monai.engines.trainer import LOSS_TERM_PREFIX, BatchDictPrepare, WeakSupervisionTrainer

__all__ = ["LOSS_TERM_PREFIX", "BatchDictPrepare", "WeakSupervisionTrainer"]
