"""Seeded noise: latents that depend only on their seed, so seed S gives the same image anywhere."""

from __future__ import annotations

import torch
from torch import Tensor


def randn_from_seeds(seeds: Tensor, shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """One standard-normal tensor of ``shape`` per seed: (len(seeds), *shape), independent of batch and device.

    Drawn on the CPU from a generator seeded per sample, so seed S gives the same latent whatever the batch size,
    the number of processes or the accelerator; the global RNG is not touched (exact resume stays exact).
    """
    g = torch.Generator()
    rows = [torch.randn(shape, generator=g.manual_seed(int(s))) for s in seeds.tolist()]
    return torch.stack(rows).to(device)


__all__ = ["randn_from_seeds"]
