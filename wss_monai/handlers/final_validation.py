"""A last validation when training ends between two validation epochs, so every run has its ``model.pt``.

MONAI's :class:`~monai.handlers.ValidationHandler` validates every ``interval`` epochs; a run whose
``max_epochs`` is not a multiple of it (``--max_epochs 3 --val_interval 5``) ended with no validation
at all, hence no best-validation checkpoint ``models/model.pt`` for inference and evaluation to read.
:class:`FinalValidation` runs the validator once more when training completes, unless the last epoch
was validated already.
"""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events

__all__ = ["FinalValidation"]

logger = logging.getLogger(__name__)


class FinalValidation:
    """Runs ``validator`` when the trainer completes, unless the last epoch was a validation epoch.

    Args:
        validator: the evaluator (``SupervisedEvaluator``) of the training run.
        interval: the ``ValidationHandler``'s interval in epochs (>= 1).
    """

    def __init__(self, validator: Engine, interval: int) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be an integer >= 1 (epochs), got {interval!r}")
        self.validator, self.interval = validator, interval

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        if epoch % self.interval == 0:
            return
        logger.info(
            "training ended at epoch %d, between validations (every %d): validating once more", epoch, self.interval
        )
        self.validator.run(epoch)
