"""Discrete solvers in worker processes: submitted without blocking, failures named by case.

GCO is not thread safe and a solve takes 0.05–7 s (a slice, a volume), so problems go to a pool of
processes while the training loop goes on; :meth:`SolverPool.gather` collects them when they are
needed. A worker that raises, is killed, or takes longer than ``timeout`` ends in a
:class:`~wss_monai.solvers.problem.SolverError` naming the case, never a hung run; after a crash or a
time-out the pool starts fresh processes.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from wss_monai.solvers.alpha_expansion import alpha_expansion
from wss_monai.solvers.graph_cut import binary_graph_cut
from wss_monai.solvers.problem import PottsProblem, SolverError

__all__ = ["SOLVERS", "SolverPool", "solve"]

logger = logging.getLogger(__name__)

SOLVERS: dict[str, Callable[..., np.ndarray]] = {"alpha_expansion": alpha_expansion, "graph_cut": binary_graph_cut}
"""The solvers by name: α-expansion (any number of labels) and the exact binary graph cut."""


def solve(solver: str | Callable[..., np.ndarray], problem: PottsProblem, **options) -> np.ndarray:
    """Runs one solver on one problem; any failure becomes a ``SolverError`` naming ``problem.case``."""
    function = SOLVERS[solver] if isinstance(solver, str) else solver
    try:
        return function(problem, **options)
    except SolverError:
        raise
    except Exception as error:
        raise SolverError(f"{problem.case}: {type(error).__name__}: {error}") from error


class SolverPool:
    """A pool of solver processes.

    Args:
        solver: ``"alpha_expansion"``, ``"graph_cut"`` or a picklable callable ``f(problem, **options)``.
        workers: processes; ``0`` solves in the calling process (tests, debugging).
        timeout: seconds one case may take before it is an error.
        context: the multiprocessing start method; ``"spawn"`` (the default) is safe beside torch's threads.
        options: passed to the solver (e.g. ``sweeps=5``).

    Example:
        >>> problem = PottsProblem(np.array([[[0.0, 4.0]], [[4.0, 0.0]]]), [((0, 1), np.ones((1, 1)))])
        >>> with SolverPool(workers=0) as pool:
        ...     [labels.tolist() for labels in pool.solve([problem])]
        [[[0, 1]]]
    """

    def __init__(
        self,
        solver: str | Callable[..., np.ndarray] = "alpha_expansion",
        workers: int = 1,
        timeout: float = 120.0,
        context: str = "spawn",
        **options,
    ) -> None:
        if isinstance(solver, str) and solver not in SOLVERS:
            raise ValueError(f"solver must be one of {sorted(SOLVERS)} or a callable, got {solver!r}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.solver, self.workers, self.timeout, self.options = solver, int(workers), float(timeout), options
        self.context = multiprocessing.get_context(context)
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=self.context)
        return self._executor

    def submit(self, problems: Sequence[PottsProblem]) -> list[Future]:
        """Starts solving ``problems`` and returns at once, one future per problem."""
        if self.workers == 0:
            futures = []
            for problem in problems:
                future: Future = Future()
                try:
                    future.set_result(solve(self.solver, problem, **self.options))
                except SolverError as error:
                    future.set_exception(error)
                futures.append(future)
            return futures
        pool = self._pool()
        return [pool.submit(solve, self.solver, problem, **self.options) for problem in problems]

    def gather(self, futures: Sequence[Future], problems: Sequence[PottsProblem]) -> list[np.ndarray]:
        """The label maps of ``futures`` (from :meth:`submit` on ``problems``), in order.

        Raises:
            SolverError: the first failed case, named: its own error, a killed worker or a time-out.
        """
        results = []
        for future, problem in zip(futures, problems):
            try:
                results.append(future.result(timeout=self.timeout))
            except SolverError:
                self._cancel(futures)
                raise
            except BrokenProcessPool as error:
                self._reset()
                raise SolverError(f"{problem.case}: the solver process died (killed, or out of memory)") from error
            except FutureTimeout as error:
                self._reset()
                raise SolverError(f"{problem.case}: no result after {self.timeout:g} s") from error
        return results

    def solve(self, problems: Sequence[PottsProblem]) -> list[np.ndarray]:
        """:meth:`submit` then :meth:`gather`."""
        return self.gather(self.submit(problems), problems)

    def _cancel(self, futures: Sequence[Future]) -> None:
        for future in futures:
            future.cancel()

    def _reset(self) -> None:
        """Ends every worker (a hung or dead one included); the next submit starts fresh processes."""
        if self._executor is not None:
            processes = list(getattr(self._executor, "_processes", {}).values())
            self._executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            self._executor = None
            logger.warning("solver pool restarted after a failed case")

    def close(self) -> None:
        """Stops the workers."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> SolverPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        raise TypeError("a SolverPool holds processes and cannot be pickled")
