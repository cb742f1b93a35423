"""Step timing shared by the overhead benchmarks (``loss_overhead``, ``constraint_overhead``, ``boundary_overhead``).

A bundle's reference network, one training step (forward, loss, backward, optimizer step) timed
over a few steps, the loss variants alternated round by round so that drifts of the machine
spread over all of them, and the loss alone (forward + backward on fixed logits).
"""

from __future__ import annotations

import statistics
import time

import torch
from monai.bundle import ConfigParser

from wss_monai.bundle import bundle_configs

__all__ = [
    "loss_only_medians",
    "paired_ratios",
    "random_scribbles",
    "reference_network",
    "time_loss_only",
    "time_steps",
    "time_variants",
]


def reference_network(bundle: str) -> torch.nn.Module:
    """The ``network_def`` of a bundle's training config (bundle and engine, no profile), instantiated."""
    parser = ConfigParser()
    parser.read_config([str(f) for f in bundle_configs(bundle)])
    return parser.get_parsed_content("network_def", instantiate=True)


def random_scribbles(batch_size: int, size: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Scribbles ``(B, 1, size, size)``: a random class on ~1 % of the pixels, -1 (unlabelled) elsewhere."""
    scribble = torch.full((batch_size, 1, size, size), -1)
    mask = torch.rand(batch_size, 1, size, size, generator=generator) < 0.01
    scribble[mask] = torch.randint(0, num_classes, (int(mask.sum()),), generator=generator)
    return scribble


def time_steps(network, optimizer, loss, batch: dict, steps: int) -> float:
    """Mean seconds of one training step on ``batch["image"]`` over ``steps`` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        out = loss(network(batch["image"]), batch)
        out["loss"].backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def time_loss_only(loss, logits: torch.Tensor, batch: dict, steps: int) -> float:
    """Mean seconds of the loss forward + backward on fixed ``logits`` over ``steps`` calls."""
    start = time.perf_counter()
    for _ in range(steps):
        x = logits.detach().requires_grad_()
        loss(x, batch)["loss"].backward()
    return (time.perf_counter() - start) / steps


def time_variants(network, optimizer, losses: dict, batch: dict, rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step of each loss, one value per round: one warm-up step each, then the losses in turn.

    Each round starts one variant later than the one before (a rotation), so that no variant always
    runs right after the same other one.
    """
    for loss in losses.values():  # warm-up
        time_steps(network, optimizer, loss, batch, 1)
    names = list(losses)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(time_steps(network, optimizer, losses[name], batch, steps))
    return times


def paired_ratios(times: dict[str, list[float]], reference: str) -> dict[str, float]:
    """Median over rounds of each variant's time divided by the reference's time in the same round.

    Pairing by round cancels the slow drifts of a shared machine that a ratio of two medians keeps.
    """
    return {
        name: statistics.median(t / b for t, b in zip(values, times[reference], strict=True))
        for name, values in times.items()
    }


def loss_only_medians(network, losses: dict, batch: dict, rounds: int, steps: int) -> dict[str, float]:
    """Median over ``rounds`` of :func:`time_loss_only` for each loss, on the network's logits of the batch."""
    with torch.no_grad():
        logits = network(batch["image"])
    return {
        name: statistics.median(time_loss_only(loss, logits, batch, steps) for _ in range(rounds))
        for name, loss in losses.items()
    }
