"""Seeded noise: latents that depend only on their seed, so seed S gives the same image anywhere; and paths
between them (spherical interpolation) for the GAN's interpolation grid."""

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


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between Gaussian latents (White 2016), rows of ``a``/``b`` (N, D), ``t`` (N, 1)."""
    cos = (a * b).sum(-1, keepdim=True) / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True))
    omega = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def interpolation_latents(rows: int, dim: int, steps: int = 8, device: torch.device | str = "cpu") -> Tensor:
    """``rows`` spherical interpolations of ``steps`` latents each, row i from seed i's latent to seed
    (rows + i)'s: (rows · steps, dim), the same for every run and device."""
    a = randn_from_seeds(torch.arange(rows), (dim,), device)
    b = randn_from_seeds(torch.arange(rows) + rows, (dim,), device)
    t = torch.linspace(0, 1, steps, device=device).repeat(rows)[:, None]  # (rows * steps, 1)
    return slerp(a.repeat_interleave(steps, 0), b.repeat_interleave(steps, 0), t)  # (rows * steps, dim)


__all__ = ["interpolation_latents", "randn_from_seeds", "slerp"]
