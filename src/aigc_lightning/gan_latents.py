"""How a GAN's latents reach its generator, in training and in sampling (``model.latents``, by ``class_path``).

- ``GaussianLatents`` (the default): z ~ N(0, I) straight into ``G(z)``; truncation pulls z toward the mean of
  fixed latents (``model.mean_latent_samples`` of them). Any generator (DCGAN). A class-conditional generator gets
  ``G(z, y)``; its label embedding is never truncated, so z moves toward the class's own mean input (z̄, e(y)).

Every method takes ``labels`` (B,) for a class-conditional generator, ``None`` otherwise.
- ``StyleLatents``: StyleGAN2's path z → ``G.mapping`` → ws → ``G.synthesis``, with style mixing in training
  (StyleGAN §3.1) and truncation in w around the tracked ``w_avg`` (as NVlabs). It hands the ws to the path-length
  penalty (``gan_regularizers.PathLength``).

    latents: {class_path: aigc_lightning.gan_latents.StyleLatents, init_args: {mixing_prob: 0.9}}
"""

from __future__ import annotations

import torch
from jsonargparse.typing import ClosedUnitInterval as Unit
from torch import Tensor, nn

from aigc_lightning.errors import UserError
from aigc_lightning.nets.stylegan2 import mix_styles


def call_generator(generator: nn.Module, z: Tensor, labels: Tensor | None) -> Tensor:
    """``G(z)``, or ``G(z, labels)`` for a class-conditional generator."""
    return generator(z) if labels is None else generator(z, labels=labels)


class LabelledGenerator(nn.Module):
    """``z ↦ G(z, labels[:B])``: a conditional generator with fixed labels, for helpers that call ``model(z)``
    (``torch.optim.swa_utils.update_bn``'s standing batch-norm statistics)."""

    def __init__(self, generator: nn.Module, labels: Tensor) -> None:
        super().__init__()
        self.generator, self.labels = generator, labels
        self.train(generator.training)

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z, labels=self.labels[: len(z)].to(z.device))


class Latents:
    """The latent path of a generator; subclasses choose it (see the module's docstring)."""

    gives_ws = False  # whether ``fakes`` returns the ws its images came from

    def check(self, generator: nn.Module) -> None:
        """Raise a ``UserError`` if ``generator`` lacks what this path calls."""

    def fakes(
        self, generator: nn.Module, n: int, device: torch.device, labels: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``n`` training images (n, C, H, W) from fresh latents, and the ws they came from (None if none)."""
        raise NotImplementedError

    def centre(self, generator: nn.Module, rng: torch.Generator, samples: int, device: torch.device) -> Tensor:
        """The truncation centre of ``generator`` (the EMA one), estimated from ``samples`` latents of ``rng``
        where it is estimated at all."""
        raise NotImplementedError

    def generate(
        self,
        generator: nn.Module,
        z: Tensor,
        psi: float,
        centre: Tensor,
        noise_mode: str,
        labels: Tensor | None = None,
    ) -> Tensor:
        """Images (B, C, H, W) in [-1, 1] from z (B, D), truncated toward ``centre`` by ``psi`` (1: none)."""
        raise NotImplementedError


class GaussianLatents(Latents):
    """z ~ N(0, I) into ``G(z)``; truncation ``mean + psi · (z − mean)`` around the mean of fixed latents."""

    def fakes(
        self, generator: nn.Module, n: int, device: torch.device, labels: Tensor | None = None
    ) -> tuple[Tensor, None]:
        return call_generator(generator, torch.randn(n, generator.latent_dim, device=device), labels), None

    def centre(self, generator: nn.Module, rng: torch.Generator, samples: int, device: torch.device) -> Tensor:
        return torch.randn(samples, generator.latent_dim, generator=rng).to(device).mean(0)  # (D,)

    def generate(
        self,
        generator: nn.Module,
        z: Tensor,
        psi: float,
        centre: Tensor,
        noise_mode: str,
        labels: Tensor | None = None,
    ) -> Tensor:
        return call_generator(generator, torch.lerp(centre, z, psi) if psi != 1 else z, labels)

    def __repr__(self) -> str:
        return "GaussianLatents()"


class StyleLatents(Latents):
    """StyleGAN2's z → mapping → ws → synthesis, with style mixing; truncation in w around ``w_avg`` (a conditional
    generator: around the class's own mean w, estimated from ``mean_latent_samples`` latents).

    Args:
        mixing_prob: probability that a training sample takes a second latent's ws from a random layer on
            (StyleGAN §3.1; NVlabs 0.9). ``w_avg`` tracks the first latent of a pair only.
    """

    gives_ws = True

    def __init__(self, mixing_prob: Unit = 0.0) -> None:
        self.mixing_prob = float(mixing_prob)

    def check(self, generator: nn.Module) -> None:
        missing = [a for a in ("mapping", "synthesis", "w_avg", "num_ws") if not hasattr(generator, a)]
        if missing:
            raise UserError(
                f"model.latents StyleLatents needs a StyleGAN2Generator (mapping, synthesis, w_avg); "
                f"{type(generator).__name__} has no {', '.join(missing)}: drop model.latents for this generator"
            )

    def fakes(
        self, generator: nn.Module, n: int, device: torch.device, labels: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        g = generator
        z = torch.randn(n, g.latent_dim, device=device)
        ws = g.mapping(z, labels=labels)  # (n, num_ws, w_dim); in training mode this updates w_avg
        if self.mixing_prob > 0:  # w_avg follows the first latent only
            ws2 = g.mapping(torch.randn_like(z), update_w_avg=False, labels=labels)
            cut = torch.randint(1, g.num_ws, (n,), device=device)
            mixed = torch.rand(n, device=device) < self.mixing_prob
            ws = mix_styles(ws, ws2, torch.where(mixed, cut, torch.full_like(cut, g.num_ws)))
        return g.synthesis(ws), ws

    def centre(self, generator: nn.Module, rng: torch.Generator, samples: int, device: torch.device) -> Tensor:
        if not getattr(generator, "num_classes", 0):
            return generator.w_avg.clone()  # (w_dim,): tracked in training, as NVlabs
        # a conditional generator: each class's own mean w, (K, w_dim), from samples // K latents per class
        k = generator.num_classes
        z = torch.randn(max(1, samples // k), generator.latent_dim, generator=rng).to(device)  # the same z for all
        return torch.stack([generator.mapping(z, update_w_avg=False, labels=torch.full((len(z),), c, device=device))[
            :, 0].mean(0) for c in range(k)])  # fmt: skip

    def generate(
        self,
        generator: nn.Module,
        z: Tensor,
        psi: float,
        centre: Tensor,
        noise_mode: str,
        labels: Tensor | None = None,
    ) -> Tensor:
        if labels is None:
            ws = generator.mapping(z, truncation_psi=psi, update_w_avg=False)  # (B, num_ws, w_dim), around w_avg
        else:  # toward the class's own mean w (``centre`` (K, w_dim))
            ws = generator.mapping(z, update_w_avg=False, labels=labels)
            ws = generator.truncate(ws, psi, centre=centre[labels][:, None])
        return generator.synthesis(ws, noise_mode=noise_mode)

    def __repr__(self) -> str:
        return f"StyleLatents(mixing_prob={self.mixing_prob})"


__all__ = ["GaussianLatents", "LabelledGenerator", "Latents", "StyleLatents", "call_generator"]
