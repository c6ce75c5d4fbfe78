"""StyleGAN2's lazy regularisers as objects a config picks by ``class_path`` (``model.r1``, ``model.path_length``).

Lazy regularisation (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", §3.1 and
appendix B): a regulariser is evaluated only on every k-th step and scaled by k, and, as NVlabs does, the optimizer
of that network can be corrected for it (``lazy_correction``: lr × c, Adam betas ** c, c = k / (k + 1); ``lazy.py``).
Each term joins the loss of the step it falls on (NVlabs takes an extra step), so every loss uses every parameter of
its network and DDP never sees an unused one.

    r1: {class_path: aigc_lightning.gan_regularizers.R1, init_args: {gamma: 0.05, every: 16}}
    path_length: {class_path: aigc_lightning.gan_regularizers.PathLength, init_args: {weight: 2.0, every: 4}}
"""

from __future__ import annotations

import math
from collections.abc import Callable

from jsonargparse.typing import ClosedUnitInterval as Unit
from jsonargparse.typing import NonNegativeFloat, PositiveInt
from torch import Tensor, nn

from aigc_lightning import losses


class R1:
    """Lazy R1 penalty γ/2·‖∇ₓD(x)‖² on real images (Mescheder et al. 2018), on every ``every``-th D step, × every.

    Args:
        gamma: the weight γ; 0 switches the penalty off.
        every: lazy interval k in discriminator steps (StyleGAN2: 16; 1 evaluates it on every step).
        lazy_correction: correct D's optimizer for the interval (lr × c, Adam betas ** c, c = k / (k + 1)), as
            StyleGAN2 does.
    """

    def __init__(self, gamma: NonNegativeFloat = 1.0, every: PositiveInt = 16, lazy_correction: bool = False) -> None:
        self.gamma, self.every, self.lazy_correction = float(gamma), int(every), bool(lazy_correction)

    def due(self, d_step: int) -> bool:
        """Whether the penalty joins D's loss at discriminator step ``d_step`` (0-based)."""
        return self.gamma > 0 and d_step % self.every == 0

    def __call__(self, discriminator: nn.Module, real: Tensor) -> Tensor:
        """‖∇ₓD(x)‖² per real image (B,), unweighted; ``scale`` weights its mean into the loss."""
        return losses.r1_penalty(discriminator, real)

    def scale(self, penalty: Tensor) -> Tensor:
        """γ/2 · penalty · k: the term added to D's loss."""
        return self.gamma / 2 * penalty * self.every

    def correction_interval(self) -> int | None:
        """k when the optimizer is to be corrected for it, else None."""
        return self.every if self.lazy_correction and self.gamma > 0 else None

    def __repr__(self) -> str:
        return f"R1(gamma={self.gamma}, every={self.every}, lazy_correction={self.lazy_correction})"


class PathLength:
    """StyleGAN2's path-length penalty (eq. 4) (‖J_wᵀy‖₂ − a)², lazy: every ``every``-th batch, × every.

    Needs the ws the images came from: ``model.latents`` a ``StyleLatents`` (a StyleGAN2 generator). The running
    mean ``a`` (``mean``) is training state; the module saves it in ``checkpoint["counters"]["pl_mean"]``.

    Args:
        weight: the penalty's weight (NVlabs 2); 0 switches it off.
        every: lazy interval in batches (NVlabs 4).
        decay: decay of the running mean of path lengths (NVlabs 0.01).
        batch_shrink: the penalty's pass uses batch_size // this many fresh samples, at least 1 (NVlabs 2).
        lazy_correction: correct G's optimizer for the interval (lr × c, Adam betas ** c, c = k / (k + 1)).
    """

    def __init__(
        self,
        weight: NonNegativeFloat = 2.0,
        every: PositiveInt = 4,
        decay: Unit = 0.01,
        batch_shrink: PositiveInt = 2,
        lazy_correction: bool = False,
    ) -> None:
        self.weight, self.every, self.decay = float(weight), int(every), float(decay)
        self.batch_shrink, self.lazy_correction = int(batch_shrink), bool(lazy_correction)
        self.mean = 0.0  # a Python float: identical on every rank, exact on resume

    def due(self, batch: int) -> bool:
        """Whether the penalty joins G's loss at batch ``batch`` (0-based)."""
        return self.weight > 0 and batch % self.every == 0

    def batch_size(self, batch_size: int) -> int:
        """Samples of the penalty's own pass for a training batch of ``batch_size``."""
        return max(1, batch_size // self.batch_shrink)

    def __call__(self, images: Tensor, ws: Tensor, mean_over_ranks: Callable[[Tensor], Tensor]) -> Tensor:
        """Per-sample penalty (n,) of ``images`` (n, C, H, W) made from ``ws`` (n, num_ws, w_dim), after moving the
        running mean toward the lengths' mean over all DDP ranks (``mean_over_ranks``); a NaN batch mean leaves
        the running mean as it is (the loss then stops the run)."""
        lengths = losses.path_lengths(images, ws)  # (n,)
        batch_mean = float(mean_over_ranks(lengths.detach().mean().double()))
        if math.isfinite(batch_mean):
            self.mean += self.decay * (batch_mean - self.mean)  # lerp toward the batch (NVlabs)
        return losses.path_length_penalty(lengths, self.mean)

    def scale(self, penalty: Tensor) -> Tensor:
        """weight · penalty · k: the term added to G's loss."""
        return self.weight * self.every * penalty

    def correction_interval(self) -> int | None:
        """k when the optimizer is to be corrected for it, else None."""
        return self.every if self.lazy_correction and self.weight > 0 else None

    def state_dict(self) -> dict[str, float]:
        return {"pl_mean": self.mean}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean = float(state.get("pl_mean", 0.0))

    def __repr__(self) -> str:
        return (
            f"PathLength(weight={self.weight}, every={self.every}, decay={self.decay}, "
            f"batch_shrink={self.batch_shrink}, lazy_correction={self.lazy_correction})"
        )


__all__ = ["R1", "PathLength"]
