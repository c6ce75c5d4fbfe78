"""Lazy regularisation's correction of an optimizer's hyper-parameters (StyleGAN2, Karras et al. 2020, §B).

A regulariser evaluated only every k-th batch, scaled by k, shifts the balance between the optimizer's steps; NVlabs
compensates by multiplying the learning rate by c = k / (k + 1) and raising Adam's betas to the power c
(stylegan2-ada-pytorch ``training_loop.py``: ``mb_ratio``), so the moment estimates keep the same time constant
measured in batches.
"""

from __future__ import annotations

from torch.optim import Optimizer


def lazy_ratio(interval: int) -> float:
    """c = k / (k + 1) for a regulariser applied every ``interval`` = k batches."""
    return interval / (interval + 1)


def apply_lazy_correction(optimizer: Optimizer, interval: int) -> Optimizer:
    """lr ← c·lr and betas ← (β₁ᶜ, β₂ᶜ) in every parameter group (betas only where the optimizer has them)."""
    c = lazy_ratio(interval)
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * c
        if "betas" in group:
            group["betas"] = tuple(beta**c for beta in group["betas"])
    return optimizer


__all__ = ["apply_lazy_correction", "lazy_ratio"]
