"""Cost of ADM's proposals per batch: α-expansion of 16 slices of 128² (K = 4, 5 sweeps) from a random network output.

Times :meth:`wss_monai.losses.ADMLoss.proposals` (problem building, solving, gathering) in the
training process (``--workers 0``) and in a pool of solver processes, median of ``--repeats``.

    python scripts/benchmarks/adm_proposals.py --workers 0 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch

from wss_monai.constants import UNLABELLED
from wss_monai.losses import ADMLoss

logger = logging.getLogger("adm_proposals")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(args.batch, 4, args.size // 8, args.size // 8, generator=generator)
    logits = torch.nn.functional.interpolate(logits, size=(args.size, args.size), mode="bilinear")
    seeds = torch.full((args.batch, 1, args.size, args.size), UNLABELLED)
    seeds[:, :, 10:12, 10:40], seeds[:, :, 60:62, 50:80] = 0, 3
    batch = {"image": torch.rand(args.batch, 1, args.size, args.size, generator=generator), "scribble": seeds}
    for workers in args.workers:
        loss = ADMLoss(workers=workers)
        loss.proposals(logits, batch)  # starts the processes
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            loss.proposals(logits, batch)
            times.append(time.perf_counter() - start)
        logger.info(
            "workers %d: %.2f s per batch of %d slices of %d²", workers, statistics.median(times), args.batch, args.size
        )


if __name__ == "__main__":
    main()
