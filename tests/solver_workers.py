"""Solvers that fail on purpose, run in the worker processes of the pool tests (importing only numpy)."""

import os
import signal
import time

from wss_monai.solvers import alpha_expansion


def raise_on_second(problem):
    """Solves every case but the one named ``second``, which raises."""
    if problem.case == "second":
        raise ArithmeticError("broken unary")
    return alpha_expansion(problem)


def kill_self(problem, **options):
    """Kills its own worker process mid-solve."""
    os.kill(os.getpid(), signal.SIGKILL)


def hang(problem):
    """Never returns in time."""
    time.sleep(60)
