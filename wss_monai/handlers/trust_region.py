"""Robust trust region, stage A: α-expansion proposals per training slice (or volume), every ``M`` epochs, cached.

Marin and Boykov, "Robust trust region for weakly supervised segmentation", ICCV 2021. At the start
of every ``interval``-th epoch (from ``start_epoch``), the network (in eval mode, without augmentation)
segments every training volume, and for every training slice (2D, :class:`~wss_monai.data.VolumeSliceDataset`)
or volume (3D, :class:`~wss_monai.data.WholeVolumeDataset`) the problem

.. math:: s = \\arg\\min_{s:\\, s_{Ω_L} = y} λ \\sum_{(p,q)} w_{pq} [s_p ≠ s_q] − λ_{KL} \\sum_p \\log S_p(s_p)

(partial cross-entropy on hard seeds, grid Potts, ``KL(s ‖ S)`` for one-hot ``s``; labels restricted to
those present in the seeds) is submitted to a :class:`~wss_monai.solvers.SolverPool`. With
``solver="dense_crf"`` the Potts term is the fully connected one of the dense CRF loss (Gaussian kernel
over position and intensity, Tang et al. 2018) and each problem is solved by mean-field inference
(Krähenbühl and Koltun 2011, :func:`~wss_monai.solvers.dense_crf_labels`) with unary ``−λ_KL log S``,
the seeds fixed and the same label restriction. Training goes on
meanwhile with the previous proposals: the pool is polled before every iteration and the new
proposals replace the old as soon as all are solved, at the latest at the end of that epoch (which
waits for them). The proposals are written into the dataset's volumes under ``proposal_key`` (created
all :data:`UNLABELLED` by :class:`wss_monai.transforms.UnlabelledLiked`), so that they are sliced,
augmented and batched with the image and the seeds; :class:`~wss_monai.losses.RobustTrustRegionLoss`
reads them there. With ``DataLoader`` workers (``num_workers > 0``) each epoch's workers copy the
dataset when the epoch starts, so new proposals reach the batches from the next epoch on.

``state_dict`` holds the proposals (int8, per volume) and the refresh count: a resumed run starts
with the cache it saved.

In a distributed run (``torchrun``) every process segments and solves its share of the volumes
(every ``R``-th, from its rank), the proposals are gathered at the end of the refresh epoch, and every
process writes all of them into its dataset: the new proposals are used from the next epoch on, by
every process at once (there is no polling before iterations).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

from wss_monai.constants import UNLABELLED
from wss_monai.data.volumes import WholeVolumeDataset
from wss_monai.losses.proposals import proposal_problems
from wss_monai.solvers import (
    DenseCRFProblem,
    SolverPool,
    checked_seeds,
    dense_crf_labels,
    labels_in_seeds,
    potts_problem_energy,
)
from wss_monai.utils.distributed import all_gather_object, get_rank, get_world_size, is_distributed

__all__ = ["STAGE_A_SOLVERS", "TrustRegionProposals"]

STAGE_A_SOLVERS = ("alpha_expansion", "dense_crf")
"""Stage A on the grid Potts energy (α-expansion) or on the dense CRF (mean field)."""


class TrustRegionProposals:
    """Stage A of the robust trust region (see the module): cached α-expansion proposals, refreshed.

    Args:
        network: the segmentation network (a ``DistributedDataParallel`` one is unwrapped).
        dataset: the training dataset (:class:`~wss_monai.data.VolumeSliceDataset` or
            :class:`~wss_monai.data.WholeVolumeDataset`), whose ``volumes`` receive the proposals.
        inferer: ``inferer(inputs (1, C, H, W, D), network) -> logits (1, K, H, W, D)`` on a whole
            volume (the bundle's validation inferer: MONAI's ``SliceInferer`` in 2D, a sliding window in 3D).
        potts_weight: ``λ`` (>= 0).
        kl_weight: ``λ_KL`` (> 0).
        interval: ``M``, epochs between two stage A (5 in the paper).
        start_epoch: the first epoch (1-based) that starts with a stage A.
        seed_key, image_key, proposal_key: volume keys of the seeds, the image and the proposals.
        neighbourhood: grid of the Potts term; ``None``: 8 in 2D, 6 in 3D.
        spacing, sigma: as in :func:`wss_monai.losses.potts_edge_weights`.
        restrict_labels: allow only the labels present in each slice's (volume's) seeds.
        sweeps, workers, timeout: of the α-expansion and the pool (workers 0: in this process).
        solver: one of :data:`STAGE_A_SOLVERS`.
        dense_crf: with ``solver="dense_crf"``, options of :func:`~wss_monai.solvers.dense_crf_labels`
            (``sigma_xy`` in voxels, ``sigma_intensity``, ``bilateral_weight``, ``gaussian_weight``,
            ``iterations``); ``potts_weight``, ``neighbourhood``, ``spacing``, ``sigma`` and ``sweeps`` are
            those of the grid solver and are not used.
        device: where the network runs.
        summary_writer: optional TensorBoard writer (``trust_region/proposal_energy``).

    Raises:
        SolverError: naming the slice (``patient001_frame01 slice 4``) of a failed, killed or timed-out solve.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        dataset,
        inferer: Callable,
        potts_weight: float,
        kl_weight: float,
        interval: int = 5,
        start_epoch: int = 1,
        seed_key: str = "scribble",
        image_key: str = "image",
        proposal_key: str = "proposal",
        neighbourhood: int | None = None,
        spacing: Sequence[float] | None = None,
        sigma: float | None = None,
        restrict_labels: bool = True,
        sweeps: int = 5,
        workers: int = 1,
        timeout: float = 600.0,
        device: torch.device | str | None = None,
        summary_writer=None,
        name: str = "wss_monai.trust_region",
        solver: str = "alpha_expansion",
        dense_crf: dict | None = None,
    ) -> None:
        if solver not in STAGE_A_SOLVERS:
            raise ValueError(f"solver must be one of {STAGE_A_SOLVERS}, got {solver!r}")
        for label, value in (("interval", interval), ("start_epoch", start_epoch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
        if not hasattr(dataset, "volumes") or not hasattr(dataset, "index"):
            raise TypeError(f"dataset must be a VolumeSliceDataset or WholeVolumeDataset, got {type(dataset).__name__}")
        if not potts_weight >= 0 or not kl_weight > 0:
            raise ValueError(f"potts_weight must be >= 0 and kl_weight > 0, got {potts_weight!r} and {kl_weight!r}")
        if isinstance(network, torch.nn.parallel.DistributedDataParallel):
            network = network.module
        self.network, self.dataset, self.inferer = network, dataset, inferer
        self.potts_weight, self.kl_weight = float(potts_weight), float(kl_weight)
        self.interval, self.start_epoch = interval, start_epoch
        self.seed_key, self.image_key, self.proposal_key = seed_key, image_key, proposal_key
        self.neighbourhood, self.sigma, self.restrict_labels = neighbourhood, sigma, bool(restrict_labels)
        self.spacing = None if spacing is None else [float(s) for s in spacing]
        self.volumetric = isinstance(dataset, WholeVolumeDataset)
        self.solver = solver
        if solver == "dense_crf":
            self.pool = SolverPool(dense_crf_labels, workers=workers, timeout=timeout, **dict(dense_crf or {}))
            self.energy_name = "share of voxels changed from the network's argmax"
        else:
            self.pool = SolverPool("alpha_expansion", workers=workers, timeout=timeout, sweeps=sweeps)
            self.energy_name = "grid-CRF energy"
        self.device = device
        self.summary_writer = summary_writer
        self.logger = logging.getLogger(name)
        self.refreshes = 0
        self.proposals: dict[int, torch.Tensor] = {}  # volume index -> (1, H, W, D) int8
        self._pending: tuple | None = None
        for v, volume in enumerate(self.dataset.volumes):
            if self.proposal_key not in volume:
                raise KeyError(
                    f"volume {v} has no {self.proposal_key!r} map: add wss_monai.transforms.UnlabelledLiked to "
                    "overlay_transforms and the key to overlay_image_keys"
                )

    def is_refresh_epoch(self, epoch: int) -> bool:
        """Whether stage A starts at the beginning of ``epoch`` (1-based)."""
        return epoch >= self.start_epoch and (epoch - self.start_epoch) % self.interval == 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.submit)
        engine.add_event_handler(Events.ITERATION_STARTED, self.poll)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.collect)

    def _volume_items(self) -> dict[int, list[int]]:
        """Volume index -> the slices trained on (``[-1]``: a whole volume); this process's share if distributed."""
        items: dict[int, list[int]] = {}
        for entry in self.dataset.index:
            if self.volumetric:
                items.setdefault(int(entry), []).append(-1)
            else:
                items.setdefault(int(entry[0]), []).append(int(entry[1]))
        if is_distributed():
            rank, size = get_rank(), get_world_size()
            items = {v: slices for k, (v, slices) in enumerate(sorted(items.items())) if k % size == rank}
        return items

    def _volume_name(self, v: int) -> str:
        volume = self.dataset.volumes[v]
        parts = [str(volume[k]) for k in ("patient", "frame") if k in volume and not torch.is_tensor(volume[k])]
        return "_".join(parts) if parts else f"volume {v}"

    def segmented_volumes(self) -> Iterator[tuple[int, list[int], dict, torch.Tensor, torch.Tensor]]:
        """The network's output on every training volume of this process's share, in eval mode, without gradient.

        Yields ``(v, slices, volume, image, logits)``: the volume's index and slices (``[-1]``: the whole
        volume), the volume itself, its image ``(C, H, W, D)`` float and the logits ``(1, K, H, W, D)``
        float, on the network's device. The network's training mode is restored at the end.
        """
        training = self.network.training
        self.network.eval()
        try:
            for v, slices in self._volume_items().items():
                volume = self.dataset.volumes[v]
                image = torch.as_tensor(volume[self.image_key]).float()  # (C, H, W, D)
                with torch.no_grad():
                    logits = self.inferer(image[None].to(self.device), self.network)
                    logits = logits.as_tensor() if hasattr(logits, "as_tensor") else logits
                yield v, slices, volume, image, logits.float()
        finally:
            self.network.train(training)

    def problems(self) -> tuple[list, list[tuple[int, int]]]:
        """Stage-A problems of every training slice (volume) of this process's share, and their ``(volume, slice)``."""
        problems, keys = [], []
        for v, slices, volume, image, logits in self.segmented_volumes():
            seeds = torch.as_tensor(volume[self.seed_key])[0]  # (H, W, D)
            name = self._volume_name(v)
            if self.solver == "dense_crf":
                problems += self._dense_problems(logits, image, seeds, slices, name)
                keys += [(v, s) for s in slices]
                continue
            log_probs = torch.log_softmax(logits, dim=1).cpu()  # (1, K, H, W, D)
            if self.volumetric:
                lp, im, sd, cases = log_probs, image[None], seeds[None], [name]
            else:
                lp = log_probs[0].permute(3, 0, 1, 2)[slices]
                im = image.permute(3, 0, 1, 2)[slices]
                sd = seeds.permute(2, 0, 1)[slices]
                cases = [f"{name} slice {s}" for s in slices]
            problems += proposal_problems(
                lp,
                im,
                sd,
                self.potts_weight,
                self.kl_weight,
                cases,
                self.neighbourhood,
                self.spacing,
                self.sigma,
                self.restrict_labels,
            )
            keys += [(v, s) for s in slices]
        return problems, keys

    def _dense_problems(self, logits, image, seeds, slices: list[int], name: str) -> list[DenseCRFProblem]:
        """Dense-CRF problems of one volume's slices (``[-1]``: the volume): ``S^λ_KL`` as the probabilities
        (unary ``−λ_KL log S``), every label allowed but a seed voxel's own one and, with ``restrict_labels``,
        those absent from the slice's seeds."""
        probs = (torch.softmax(logits, dim=1)[0].cpu().double() ** self.kl_weight).numpy()  # (K, H, W, D)
        seeds, image = seeds.numpy(), image.numpy()
        num_labels = probs.shape[0]
        problems = []
        for s in slices:
            part = (Ellipsis,) if s < 0 else (Ellipsis, s)
            case = name if s < 0 else f"{name} slice {s}"
            seed_map = checked_seeds(seeds[part], num_labels, probs[part].shape[1:], case)
            labels = labels_in_seeds(seed_map) if self.restrict_labels else None
            allowed = np.zeros((num_labels, *seed_map.shape), bool)
            allowed[range(num_labels) if labels is None else labels] = True
            seeded = seed_map != UNLABELLED
            allowed[:, seeded] = False
            allowed[(seed_map[seeded], *np.nonzero(seeded))] = True
            problems.append(DenseCRFProblem(case, probs[part], image[part], allowed))
        return problems

    def submit(self, engine: Engine) -> None:
        """At the start of a refresh epoch: segments the training set and submits its problems to the pool."""
        if self._pending is not None or not self.is_refresh_epoch(engine.state.epoch):
            return
        started = time.perf_counter()
        problems, keys = self.problems()
        self._pending = (self.pool.submit(problems), problems, keys, engine.state.epoch, started)
        self.logger.info("epoch %d: stage A submitted, %d problems", engine.state.epoch, len(problems))

    def poll(self, engine: Engine) -> None:
        """Before an iteration: takes the new proposals if every problem is solved (not when distributed)."""
        if is_distributed():
            return
        if self._pending is not None and all(f.done() for f in self._pending[0]):
            self.collect(engine)

    def collect(self, engine: Engine) -> None:
        """Waits for the pending proposals (if any) and writes them into the cache and the volumes."""
        if self._pending is None:
            return
        futures, problems, keys, epoch, started = self._pending
        self._pending = None
        labels = self.pool.gather(futures, problems)
        solved = []
        for key, problem, result in zip(keys, problems, labels):
            result = self.finish(problem, result)
            solved.append((key, result.astype(np.int8), self._grid_energy(problem, result)))
        if is_distributed():
            solved = [item for part in all_gather_object(solved) for item in part]
        energies = []
        for (v, s), result, energy in solved:
            if v not in self.proposals:
                self.proposals[v] = torch.full(
                    tuple(torch.as_tensor(self.dataset.volumes[v][self.seed_key]).shape), UNLABELLED, dtype=torch.int8
                )
            target = self.proposals[v][0] if s < 0 else self.proposals[v][0, ..., s]
            target.copy_(torch.from_numpy(result))
            energies.append(energy)
        for v in {key[0] for key, _, _ in solved}:
            self._write(v)
        self.refreshes += 1
        mean_energy = float(np.mean(energies)) if energies else float("nan")
        self.logger.info(
            "stage A of epoch %d: %d proposals in %.1f s (in use from iteration %d), mean %s %.4g",
            epoch,
            len(solved),
            time.perf_counter() - started,
            engine.state.iteration + 1,
            self.energy_name,
            mean_energy,
        )
        if self.summary_writer is not None:
            self.summary_writer.add_scalar("trust_region/proposal_energy", mean_energy, engine.state.epoch)

    def finish(self, problem, labels: np.ndarray) -> np.ndarray:
        """The proposal of one solved problem as it is stored (here: the solver's labels unchanged)."""
        return labels

    def _grid_energy(self, problem, labels: np.ndarray) -> float:
        """``Σ w_pq [s_p ≠ s_q] / |Ω|``: the Potts part of the problem's energy without ``λ``, per voxel; for a
        dense-CRF problem, the share of voxels whose label differs from the network's argmax."""
        if isinstance(problem, DenseCRFProblem):
            return float((labels != np.asarray(problem.probs).argmax(0)).mean())
        pairwise = potts_problem_energy(problem, labels) - float(
            np.take_along_axis(problem.unary, labels[None], 0).sum()
        )
        return pairwise / max(self.potts_weight, 1e-12) / labels.size if self.potts_weight > 0 else 0.0

    def _write(self, v: int) -> None:
        self.dataset.volumes[v][self.proposal_key] = self.proposals[v].float()

    def state_dict(self) -> dict:
        return {"refreshes": self.refreshes, "proposals": {int(v): p.clone() for v, p in self.proposals.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restores the cache into the dataset's volumes (shapes checked) and the refresh count."""
        proposals = {int(v): torch.as_tensor(p).to(torch.int8) for v, p in state["proposals"].items()}
        for v, p in proposals.items():
            if v >= len(self.dataset.volumes):
                raise ValueError(
                    f"the checkpoint holds proposals of volume {v}, the dataset has {len(self.dataset.volumes)}"
                )
            shape = tuple(torch.as_tensor(self.dataset.volumes[v][self.seed_key]).shape)
            if tuple(p.shape) != shape:
                raise ValueError(
                    f"the checkpoint's proposals of volume {v} have shape {tuple(p.shape)}, expected {shape}"
                )
        self.proposals, self.refreshes = proposals, int(state["refreshes"])
        for v in self.proposals:
            self._write(v)
