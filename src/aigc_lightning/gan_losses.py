"""The adversarial game of a GAN as small objects a config picks by ``class_path`` (``model.loss``).

Each object turns discriminator logits into **per-sample** losses (B,) and may add a penalty on the discriminator
itself; the module reduces and steps (the split of NVlabs edm's ``training/loss.py``: a loss is a small class over
the networks and images, the networks never compute losses). The formulas are the pure functions of ``losses.py``.

    loss:
      class_path: aigc_lightning.gan_losses.WassersteinGP
      init_args: {gp_weight: 10.0}
"""

from __future__ import annotations

from jsonargparse.typing import NonNegativeFloat
from torch import Tensor, nn

from aigc_lightning import losses


class AdversarialLoss:
    """The generator's and the discriminator's losses from logits; subclasses choose the game.

    ``penalty`` is a term on D's input gradients (WGAN-GP), ``None`` where the game has none; it is weighted by
    ``penalty_weight`` and logged as ``train/gp``.
    """

    penalty_weight: float = 0.0

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """D's loss (B,) from its logits on real and on generated images, each (B,)."""
        raise NotImplementedError

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        """G's loss (B,) from D's logits on generated images (B,)."""
        raise NotImplementedError

    def penalty(self, discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        """An unweighted penalty (B,) on ``discriminator`` at real and (detached) fake images, or ``None``."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NonSaturating(AdversarialLoss):
    """The original GAN game with the non-saturating generator loss, in logits form (Goodfellow et al. 2014)."""

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return losses.d_nonsaturating(real_logits, fake_logits)

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return losses.g_nonsaturating(fake_logits)


class Hinge(AdversarialLoss):
    """The hinge game (Lim & Ye 2017; SN-GAN, Miyato et al. 2018)."""

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return losses.d_hinge(real_logits, fake_logits)

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return losses.g_hinge(fake_logits)


class WassersteinGP(AdversarialLoss):
    """Wasserstein critic with gradient penalty (Gulrajani et al. 2017). Use a discriminator without batch norm
    (the penalty is per sample) and usually ``n_critic: 5``.

    Args:
        gp_weight: weight λ of the gradient penalty (λ·(‖∇D(x̂)‖₂ − 1)², the paper's 10).
    """

    def __init__(self, gp_weight: NonNegativeFloat = 10.0) -> None:
        self.gp_weight = self.penalty_weight = float(gp_weight)  # plain float: checkpoints load weights_only

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return losses.d_wasserstein(real_logits, fake_logits)

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return losses.g_wasserstein(fake_logits)

    def penalty(self, discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return losses.gradient_penalty(discriminator, real, fake)

    def __repr__(self) -> str:
        return f"WassersteinGP(gp_weight={self.gp_weight})"


__all__ = ["AdversarialLoss", "Hinge", "NonSaturating", "WassersteinGP"]
