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
        workers: int = 1,
        timeout: float = 600.0,
        device: torch.device | str | None = None,
        summary_writer=None,
        name: str = "wss_monai.deepcut",
    ) -> None:
        super().__init__(
            network, dataset, inferer, potts_weight=0.0, kl_weight=1.0, interval=interval, start_epoch=start_epoch,
            seed_key=proposal_key, image_key=image_key, proposal_key=proposal_key, workers=0, device=device,
            summary_writer=None, name=name,
        )  # fmt: skip
        self.box_key = box_key
        self.pool = SolverPool(
            dense_crf_labels, workers=workers, timeout=timeout, sigma_xy=sigma_xy, sigma_intensity=sigma_intensity,
            bilateral_weight=bilateral_weight, gaussian_weight=gaussian_weight, iterations=iterations,
        )  # fmt: skip
        self.deepcut_writer = summary_writer

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

    def _grid_energy(self, problem, labels: np.ndarray) -> float:
        """The share of the box voxels the proposal labels foreground (in the base class's log line, where the
        trust region reports its grid-CRF energy)."""
        inside = problem.allowed[1:].any(0)
        return float((labels[inside] > 0).mean()) if inside.any() else 0.0
