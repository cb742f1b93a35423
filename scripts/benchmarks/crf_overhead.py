"""What the CRF losses add to a training step: 2D slices and whole 3D volumes.

One training step (forward, loss, backward, AdamW step) of the acdc bundle's network with partial
cross-entropy alone and with each CRF loss added, at the settings of the recipes in
``configs/regularisers/``:

- 2D: the acdc bundle's 2D U-Net on a batch of 16 slices of 128 x 128 (the benchmark budget);
- 3D: the U-Net of ``configs/profiles/whole_volumes_3d.yaml`` on whole volumes (2 x 128 x 128 x 16:
  ACDC's volumes resized in-plane, their 6-21 slices padded to 16 as that profile pads them), the
  losses in 3D with the voxel spacing 1.5 x 1.5 x 10 mm.

The images are cardiac phantoms (``wss_monai.data.phantoms``) or, with ``--dataset_dir``, the real
ACDC volumes; the lattice's size depends on the image, so real data gives the representative
dense-CRF cost. Variants alternate round by round in one run (the order rotated each round); each
row gives the median step time, its ratio to partial CE (the median over rounds of the ratio
within a round) and the loss alone (forward + backward on fixed logits). rloss reports +58 % per
iteration for its dense CRF loss (Tang et al. 2018).

    python scripts/benchmarks/crf_overhead.py --dataset_dir ../shared/data/acdc --rounds 7 --steps 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser

from wss_monai.bundle import bundle_configs
from wss_monai.losses import CompositeLoss, DenseCRFLoss, GatedCRFLoss, GridPottsLoss, PartialCrossEntropyLoss

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import loss_only_medians, paired_ratios, random_scribbles, time_variants  # noqa: E402


def regulariser_settings(spatial_size: int) -> dict[str, dict]:
    """The default weight and kernel settings of each recipe in ``configs/regularisers/`` at ``spatial_size``."""
    settings = {}
    for name in ("grid_crf", "dense_crf", "gated_crf"):
        parser = ConfigParser()
        files = bundle_configs("acdc", f"configs/regularisers/{name}.yaml")
        parser.read_config([str(f) for f in files])
        parser["spatial_size"] = spatial_size
        keys = [k for k in parser.config if k.startswith("crf_") and k != "crf_weight_ramp"]
        settings[name] = {k: parser.get_parsed_content(k) for k in keys}
    return settings


def variants(dims: int, spatial_size: int) -> dict[str, CompositeLoss]:
    """pCE alone and pCE + each CRF loss; in 3D, anisotropic spacing, a window of one slice through-plane, and
    the grid CRF also on the 26-neighbourhood."""
    s = regulariser_settings(spatial_size)
    spacing = None if dims == 2 else (1.5, 1.5, 10.0)
    grid, dense, gated = s["grid_crf"], s["dense_crf"], s["gated_crf"]
    crf = {
        "grid CRF": GridPottsLoss(neighbourhood=grid["crf_neighbourhood"], spacing=spacing),
        "dense CRF": DenseCRFLoss(
            sigma_xy=dense["crf_sigma_xy"],
            sigma_intensity=dense["crf_sigma_intensity"],
            scale_factor=dense["crf_scale_factor"] if dims == 2 else [dense["crf_scale_factor"]] * 2 + [1.0],
            spacing=spacing,
        ),
        "gated CRF": GatedCRFLoss(
            sigma_xy=gated["crf_sigma_xy"],
            sigma_intensity=gated["crf_sigma_intensity"],
            radius=gated["crf_radius"] if dims == 2 else [gated["crf_radius"]] * 2 + [1],
            spacing=spacing,
        ),
    }
    weights = {"grid CRF": grid["crf_weight"], "dense CRF": dense["crf_weight"], "gated CRF": gated["crf_weight"]}
    if dims == 3:  # the default 6-neighbourhood, and the full 26 for comparison
        crf = {"grid CRF": crf["grid CRF"], "grid CRF (26)": GridPottsLoss(neighbourhood=26, spacing=spacing), **crf}
        weights["grid CRF (26)"] = grid["crf_weight"]
    out = {"pCE": CompositeLoss({"pce": PartialCrossEntropyLoss()})}
    for name, loss in crf.items():
        out[f"pCE + {name}"] = CompositeLoss(
            {"pce": PartialCrossEntropyLoss(), "crf": {"loss": loss, "weight": weights[name]}}
        )
    return out


def load_volumes(dataset_dir: Path | None, count: int) -> list[np.ndarray]:
    """``count`` z-scored image volumes ``(X, Y, Z)``: real ACDC frames, or phantoms written to a temporary folder."""
    if dataset_dir is None:
        from wss_monai.data.phantoms import make_cardiac_phantoms

        dataset_dir = make_cardiac_phantoms(tempfile.mkdtemp(), num_patients=count, shape=(128, 128))
    files = sorted(p for p in Path(dataset_dir).glob("training/patient*/patient*_frame??.nii.gz"))[:count]
    volumes = []
    for f in files:
        v = np.asarray(nib.load(str(f)).dataobj, dtype=np.float32)
        volumes.append((v - v.mean()) / v.std())
    return volumes


def make_batch(volumes: list[np.ndarray], dims: int, batch_size: int, size: int, depth: int) -> dict:
    """Images resized to ``size`` in-plane: 2D slices taken in turn from the volumes, or whole volumes (3D)."""
    generator = torch.Generator().manual_seed(0)
    resized = [
        F.interpolate(torch.from_numpy(v)[None, None], size=(size, size, depth), mode="trilinear")[0] for v in volumes
    ]
    if dims == 2:
        slices = [v[..., z] for v in resized for z in range(depth)]
        image = torch.stack(slices[:: max(1, len(slices) // batch_size)][:batch_size])
        scribble = random_scribbles(batch_size, size, 4, generator)
    else:
        image = torch.stack(resized[:batch_size])
        scribble = random_scribbles(batch_size * depth, size, 4, generator)
        scribble = scribble.view(batch_size, depth, 1, size, size).permute(0, 2, 3, 4, 1)
    return {"image": image.contiguous(), "scribble": scribble.contiguous()}


def network(dims: int) -> torch.nn.Module:
    """The acdc bundle's ``network_def`` (2D), or with the whole-volume 3D profile merged (3D)."""
    files = bundle_configs("acdc", *(["configs/profiles/whole_volumes_3d.yaml"] if dims == 3 else []))
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    return parser.get_parsed_content("network_def", instantiate=True)


def measure(dims: int, volumes: list[np.ndarray], args: argparse.Namespace) -> list[str]:
    batch_size = args.batch_size if dims == 2 else args.volumes
    batch = make_batch(volumes, dims, batch_size, args.size, args.depth if dims == 2 else args.padded_depth)
    net = network(dims)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    losses = variants(dims, args.size)
    times = time_variants(net, optimizer, losses, batch, args.rounds, args.steps)
    ratios = paired_ratios(times, "pCE")
    loss_only = loss_only_medians(net, losses, batch, args.rounds, args.steps)
    shape = "x".join(str(s) for s in batch["image"].shape[2:])
    lines = [
        f"{dims}D: batch {batch_size} x {shape}, acdc U-Net ({dims}D), {args.threads} threads, "
        f"{args.rounds} rounds x {args.steps} steps",
        "",
        "| loss | s / step (median) | step vs pCE (paired) | loss fwd + bwd (ms) | added loss / pCE step |",
        "|---|---|---|---|---|",
    ]
    base_step = statistics.median(times["pCE"])
    for name, values in times.items():
        extra = (loss_only[name] - loss_only["pCE"]) / base_step
        lines.append(
            f"| {name} | {statistics.median(values):.4f} | {ratios[name]:.3f} | {1000 * loss_only[name]:.1f} "
            f"| {extra:+.1%} |"
        )
    return lines


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_dir", type=Path, default=None, help="real ACDC (default: phantoms)")
    parser.add_argument("--batch_size", type=int, default=16, help="2D slices per batch")
    parser.add_argument("--volumes", type=int, default=2, help="3D volumes per batch")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--depth", type=int, default=10, help="slices per volume the 2D batch is cut from")
    parser.add_argument("--padded_depth", type=int, default=16, help="depth of the 3D volumes")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    volumes = load_volumes(args.dataset_dir, max(args.volumes, 4))
    lines = []
    for dims in args.dims:
        lines += measure(dims, volumes, args) + [""]
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
