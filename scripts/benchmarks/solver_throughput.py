"""Throughput of the discrete solvers: α-expansion slices per second per core, and whole 3D volumes.

Each problem is the trust region's stage A on a real ACDC frame (or a phantom): unaries
``−log S`` from a simulated network output (the ground truth's one-hot, 3 × logit scale, Gaussian
noise of SD 1.5, softmax), the grid-CRF's Boykov–Jolly weights × ``--potts_weight``, the
real scribbles (or none) as seeds, K = 4 labels, 5 sweeps. Slices are resized to ``--size``
in-plane (256² is the target's size); volumes keep their slices with the 1.5 × 1.5 × 10 mm
spacing. Times: one process (per core), and a :class:`wss_monai.solvers.SolverPool` of
``--workers`` processes (what training uses), building the problems included in neither.

    python scripts/benchmarks/solver_throughput.py --dataset_dir ../shared/data/acdc
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from wss_monai.losses import potts_edge_weights
from wss_monai.solvers import PottsProblem, SolverPool, alpha_expansion, binary_graph_cut

K = 4


def frames(dataset_dir: Path | None, count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """``count`` (image, label, scribble or None) volumes ``(X, Y, Z)``: ACDC frames or phantoms."""
    if dataset_dir is None:
        from wss_monai.data.phantoms import make_cardiac_phantoms

        dataset_dir = make_cardiac_phantoms(tempfile.mkdtemp(), num_patients=count, shape=(128, 128))
    out = []
    for image in sorted(Path(dataset_dir).glob("training/patient*/patient*_frame??.nii.gz"))[:count]:
        label = image.with_name(image.name.replace(".nii.gz", "_gt.nii.gz"))
        scribble = image.with_name(image.name.replace(".nii.gz", "_scribble.nii.gz"))
        load = lambda f: np.asarray(nib.load(str(f)).dataobj, dtype=np.float32)  # noqa: E731
        out.append((load(image), load(label), load(scribble) if scribble.exists() else None))
    return out


def resize(volume: np.ndarray, size: int, mode: str) -> torch.Tensor:
    """``(X, Y, Z)`` → ``(Z, size, size)``."""
    x = torch.from_numpy(volume).permute(2, 0, 1)[:, None]
    return F.interpolate(x, size=(size, size), mode=mode)[:, 0]


def problem(image: torch.Tensor, label: torch.Tensor, scribble: torch.Tensor | None, args, case: str, spacing=None):
    """One Potts problem from an image ``(*spatial)``, its label and scribbles (4 = unlabelled, as in ACDC)."""
    generator = torch.Generator().manual_seed(hash(case) % 2**31)
    logits = 3.0 * F.one_hot(label.long().clamp(0, K - 1), K).movedim(-1, 0).float()
    logits = logits + 1.5 * torch.randn(logits.shape, generator=generator)
    unary = -torch.log_softmax(logits, 0).numpy()
    image = (image - image.mean()) / image.std().clamp_min(1e-6)
    edges = potts_edge_weights(image[None, None], args.neighbourhood, spacing)
    edges = [(o, args.potts_weight * w[0, 0].numpy()) for o, w in edges]
    seeds = None
    if scribble is not None:
        seeds = scribble.long().numpy()
        seeds[seeds >= K] = -1
    return PottsProblem(unary, edges, seeds=seeds, case=case)


def timed(function, problems, rounds: int) -> float:
    """Median seconds per problem over ``rounds`` passes."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function(problems)
        times.append((time.perf_counter() - start) / len(problems))
    return statistics.median(times)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_dir", type=Path, default=None, help="real ACDC (default: phantoms)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=256, help="in-plane size of the 2D slices")
    parser.add_argument("--neighbourhood", type=int, default=None, help="8 in 2D and 6 in 3D by default")
    parser.add_argument("--potts_weight", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = frames(args.dataset_dir, args.frames)

    slices = []
    for f, (image, label, scribble) in enumerate(data):
        image2d, label2d = resize(image, args.size, "bilinear"), resize(label, args.size, "nearest")
        scribble2d = None if scribble is None else resize(scribble, args.size, "nearest")
        for z in range(image2d.shape[0]):
            slices.append(
                problem(image2d[z], label2d[z], None if scribble2d is None else scribble2d[z], args, f"f{f} z{z}")
            )
    volumes = []
    for f, (image, label, scribble) in enumerate(data):
        image3d, label3d = resize(image, 128, "bilinear"), resize(label, 128, "nearest")
        scribble3d = None if scribble is None else resize(scribble, 128, "nearest").permute(1, 2, 0)
        volumes.append(
            problem(image3d.permute(1, 2, 0), label3d.permute(1, 2, 0), scribble3d, args, f"f{f}", (1.5, 1.5, 10.0))
        )

    one = timed(lambda ps: [alpha_expansion(p) for p in ps], slices, args.rounds)
    with SolverPool(workers=args.workers) as pool:
        pool.solve(slices[:2])  # start the workers
        pooled = timed(pool.solve, slices, args.rounds)
    binary = [PottsProblem(p.unary[:2], p.edges, case=p.case) for p in slices]
    cut = timed(lambda ps: [binary_graph_cut(p) for p in ps], binary, args.rounds)
    expansion2 = timed(lambda ps: [alpha_expansion(p) for p in ps], binary, args.rounds)
    volume = timed(lambda ps: [alpha_expansion(p) for p in ps], volumes, 1)
    depth = statistics.mean(v.spatial_shape[2] for v in volumes)
    lines = [
        f"{len(slices)} slices of {args.size}² from {len(data)} frames, K = {K}, 5 sweeps, "
        f"{args.neighbourhood or 8}-grid, seeds {'the real scribbles' if data[0][2] is not None else 'none'}",
        "",
        "| solver | s per problem | problems / s |",
        "|---|---|---|",
        f"| α-expansion, 1 process (per core) | {one:.3f} | {1 / one:.1f} |",
        f"| α-expansion, pool of {args.workers} processes | {pooled:.3f} | {1 / pooled:.1f} |",
        f"| α-expansion, K = 2, 1 process | {expansion2:.3f} | {1 / expansion2:.1f} |",
        f"| graph cut (PyMaxflow), K = 2, 1 process | {cut:.3f} | {1 / cut:.1f} |",
        f"| α-expansion, 3D volume 128 × 128 × {depth:.1f} (6-grid), 1 process | {volume:.2f} | {1 / volume:.2f} |",
    ]
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
