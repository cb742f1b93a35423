"""DeepCut: box-initialised proposals refined by a dense CRF every ``interval`` epochs, in worker processes.

Rajchl et al., "DeepCut: object segmentation from bounding box annotations using convolutional neural
networks", IEEE TMI 2017. The network is trained with cross-entropy on proposals. The first proposals
are the boxes themselves (:class:`wss_monai.transforms.BoxTargetd`: inside = class, outside =
background); at the start of every ``interval``-th epoch from ``start_epoch``, the network segments
every training volume and each slice (volume) is refined by the box-restricted dense CRF of
:func:`wss_monai.solvers.dense_crf_labels` in a :class:`~wss_monai.solvers.SolverPool`.

The scheduling is that of the trust region's stage A (:class:`TrustRegionProposals`, which this class
extends): problems are submitted at the start of the epoch, training goes on with the previous
proposals, the new ones replace them as soon as all are solved (polled before each iteration), at the
latest at the end of the epoch; they are written into the dataset's volumes under ``proposal_key``,
and ``state_dict`` keeps them for a resumed run.

DeepCut assumes every box holds its object. A network that has trained for only a few epochs (or on
loose boxes) can give a class so little probability that the CRF removes it from its boxes, and the
cross-entropy on such proposals then teaches the network to drop the class for good (on ACDC with a
10-voxel margin every class was gone after the second update). So, in a solved slice (volume), a class
that holds less than ``min_fill`` of its boxes' voxels gets its box target back: the background voxels
of its boxes become the class again (classes in nested boxes drawn largest box first, as
:class:`~wss_monai.transforms.BoxTarget` does). ``min_fill = 0`` turns this off.
"""

from __future__ import annotations

import numpy as np
import torch

from wss_monai.handlers.trust_region import TrustRegionProposals
from wss_monai.solvers import DenseCRFProblem, SolverPool, dense_crf_labels

__all__ = ["DeepCutProposals"]


class DeepCutProposals(TrustRegionProposals):
    """Dense-CRF proposals inside the boxes, refreshed every ``interval`` epochs (see the module).

    Args:
        network, dataset, inferer, interval, start_epoch, image_key, workers, timeout, device, summary_writer:
            as in :class:`TrustRegionProposals`.
        box_key: volume key of the box-id map ``(K - 1, H, W, D)`` (:class:`wss_monai.transforms.BoxIdsd`).
        proposal_key: volume key of the proposals ``(1, H, W, D)``, first the box target.
        sigma_xy, sigma_intensity, bilateral_weight, gaussian_weight, iterations: of the dense CRF.
        min_fill: a class under this share of its boxes' voxels in a proposal gets its box target back
            there (see the module); in ``[0, 1)``.

    Example:
        >>> import numpy as np
        >>> from wss_monai.solvers import DenseCRFProblem
        >>> allowed = np.ones((2, 1, 6), bool); allowed[1, 0, 4:] = False   # class 1's box: the first 4 voxels
        >>> problem = DenseCRFProblem("case", np.full((2, 1, 6), 0.5), np.zeros((1, 1, 6)), allowed)
        >>> handler = DeepCutProposals.__new__(DeepCutProposals); handler.min_fill, handler.refilled = 0.1, 0
        >>> handler.finish(problem, np.zeros((1, 6), np.int64))[0].tolist()   # emptied: the box comes back
        [1, 1, 1, 1, 0, 0]
        >>> handler.finish(problem, np.array([[0, 1, 0, 0, 0, 0]]))[0].tolist()  # 1 of 4 voxels: kept as solved
        [0, 1, 0, 0, 0, 0]
    """

    def __init__(
        self,
        network: torch.nn.Module,
        dataset,
        inferer,
        interval: int = 5,
        start_epoch: int = 2,
        box_key: str = "box_ids",
        image_key: str = "image",
        proposal_key: str = "box_target",
        sigma_xy: float = 20.0,
        sigma_intensity: float = 0.5,
        bilateral_weight: float = 5.0,
        gaussian_weight: float = 3.0,
        iterations: int = 5,
        min_fill: float = 0.1,
        workers: int = 1,
        timeout: float = 600.0,
        device: torch.device | str | None = None,
        summary_writer=None,
        name: str = "wss_monai.deepcut",
    ) -> None:
        if not 0 <= min_fill < 1:
            raise ValueError(f"min_fill must lie in [0, 1), got {min_fill!r}")
        super().__init__(
            network, dataset, inferer, potts_weight=0.0, kl_weight=1.0, interval=interval, start_epoch=start_epoch,
            seed_key=proposal_key, image_key=image_key, proposal_key=proposal_key, workers=0, device=device,
            summary_writer=None, name=name,
        )  # fmt: skip
        self.box_key, self.min_fill, self.refilled = box_key, float(min_fill), 0
        self.pool = SolverPool(
            dense_crf_labels, workers=workers, timeout=timeout, sigma_xy=sigma_xy, sigma_intensity=sigma_intensity,
            bilateral_weight=bilateral_weight, gaussian_weight=gaussian_weight, iterations=iterations,
        )  # fmt: skip
        self.deepcut_writer = summary_writer
        self.energy_name = "share of box voxels labelled foreground"

    def problems(self) -> tuple[list, list[tuple[int, int]]]:
        """One dense-CRF problem per training slice (volume) of this process's share, and their ``(volume, slice)``."""
        problems, keys = [], []
        for v, slices, volume, image, logits in self.segmented_volumes():
            boxes = torch.as_tensor(volume[self.box_key]) > 0  # (K - 1, H, W, D)
            allowed = torch.cat([torch.ones_like(boxes[:1]), boxes]).numpy()
            probs = torch.softmax(logits, dim=1)[0].cpu().numpy()  # (K, H, W, D)
            name = self._volume_name(v)
            image = image.numpy()
            for s in slices:
                part = (Ellipsis,) if s < 0 else (Ellipsis, s)
                case = name if s < 0 else f"{name} slice {s}"
                problems.append(DenseCRFProblem(case, probs[part], image[part], allowed[part]))
                keys.append((v, s))
        return problems, keys

    def finish(self, problem, labels: np.ndarray) -> np.ndarray:
        """``labels`` with every class under ``min_fill`` of its boxes' voxels given its box target back."""
        boxes = np.asarray(problem.allowed[1:], bool)  # (K - 1, *spatial): class k + 1's boxes
        classes = np.arange(1, len(boxes) + 1).reshape(-1, *([1] * labels.ndim))
        area = boxes.reshape(len(boxes), -1).sum(1)
        held = ((labels[None] == classes) & boxes).reshape(len(boxes), -1).sum(1)
        emptied = np.flatnonzero((area > 0) & (held < self.min_fill * area))
        if emptied.size == 0:
            return labels
        self.refilled += 1
        labels = labels.copy()
        for k in emptied[np.argsort(-area[emptied], kind="stable")]:  # at most K - 1 classes; inner boxes last
            labels[boxes[k] & ((labels == 0) | np.isin(labels, emptied + 1))] = k + 1
        return labels

    def collect(self, engine) -> None:
        """As the base class; then logs how many slices (volumes) had a class given its box target back."""
        self.refilled = 0
        super().collect(engine)
        if self.refilled:
            self.logger.info("%d proposals had a class refilled from its boxes (min_fill %.2g)", self.refilled,
                             self.min_fill)  # fmt: skip

    def _grid_energy(self, problem, labels: np.ndarray) -> float:
        """The share of the box voxels the proposal labels foreground (logged where the trust region reports
        its grid-CRF energy)."""
        inside = problem.allowed[1:].any(0)
        return float((labels[inside] > 0).mean()) if inside.any() else 0.0
