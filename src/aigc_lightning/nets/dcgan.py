"""DCGAN generator and discriminator (Radford et al. 2016, "Unsupervised Representation Learning with DCGANs").

Both networks are a stack of stride-2 4x4 (transposed) convolutions between a small base resolution and the image:
``image_size = base * 2**k`` with base 4 (32, 64, 128 px) or 7 (28 px, MNIST's native size). Widths double per
level away from the image, as in the paper's 64-px architecture (``width * 8`` at 4x4 for 64 px).

Class-conditional variants (``num_classes > 0``; 0 is the unconditional network, parameter for parameter):
- the generator concatenates a learned label embedding to z (Mirza & Osindero 2014's conditional GAN with an
  embedding instead of a one-hot code). Not class-conditional batch norm (BigGAN): concatenation leaves every layer
  after the first as it is, keeps the EMA generator's standing batch-norm statistics one set for all classes, and is
  enough for MNIST-sized data; truncation then shrinks z only, i.e. toward the class's own mean input (z̄, e(y)).
- the discriminator adds a projection term (Miyato & Koyama 2018, "cGANs with Projection Discriminator", eq. 3):
  ``D(x, y) = ψ(φ(x)) + ⟨V e_y, Σ_hw φ(x)⟩`` where φ is the feature map before the last convolution (ψ) and V an
  embedding of the classes, spectrally normalised with the rest when ``spectral_norm`` is on.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from aigc_lightning.errors import UserError
from aigc_lightning.nets.sizes import check_sizes

SUPPORTED_SIZES = (28, 32, 64, 128)


def _levels(image_size: int) -> tuple[int, int]:
    """(base resolution, number of stride-2 levels) for ``image_size``; 28 = 7 * 2**2, 32/64/128 = 4 * 2**k."""
    if image_size not in SUPPORTED_SIZES:
        raise UserError(
            f"DCGAN supports image_size in {SUPPORTED_SIZES}, got {image_size}; set --data.image_size to one of them"
        )
    base = 7 if image_size == 28 else 4
    return base, (image_size // base).bit_length() - 1


def dcgan_init(module: nn.Module) -> None:
    """The paper's initialisation: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        # GroupNorm with one group = LayerNorm over (C, H, W): the WGAN-GP paper's choice for a critic, because a
        # per-sample gradient penalty is ill-defined when batch norm mixes the samples of a batch.
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class Generator(nn.Module):
    """DCGAN generator: z (B, latent_dim) → image (B, channels, image_size, image_size) in [-1, 1] (tanh).

    Args:
        latent_dim: size of the latent vector z ~ N(0, I).
        channels: image channels (1 grey, 3 RGB); the CLI sets it from the data.
        image_size: 28, 32, 64 or 128; the CLI sets it from the data.
        width: channels of the last hidden level (``ngf`` in the pytorch examples); deeper levels double it.
        num_classes: classes of a conditional generator (0: unconditional); the CLI sets it from the data when
            the model is ``conditional``.
        embed_dim: size of the label embedding concatenated to z (conditional only). 10, one per digit (a one-hot
            code's size): on the digits, at 32 the label outweighs z and each class collapses to one image
            (docs/conditional.md, "Numbers").
    """

    def __init__(
        self,
        latent_dim: int = 100,
        channels: int = 1,
        image_size: int = 32,
        width: int = 64,
        num_classes: int = 0,
        embed_dim: int = 10,
    ) -> None:
        super().__init__()
        check_sizes(self, latent_dim=latent_dim, channels=channels, width=width)
        check_sizes(self, 0, num_classes=num_classes)
        base, levels = _levels(image_size)
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.image_shape = (channels, image_size, image_size)
        c = width * 2 ** (levels - 1)
        z_in = latent_dim + (embed_dim if self.num_classes else 0)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_in, c, base, 1, 0, bias=False),  # (B, c, base, base)
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        ]
        for _ in range(levels - 1):
            layers += [
                nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c // 2),
                nn.ReLU(True),
            ]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)
        if self.num_classes:  # after the init: an unconditional network draws the same weights as before
            check_sizes(self, embed_dim=embed_dim)
            self.embed = nn.Embedding(self.num_classes, embed_dim)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images (B, C, H, W) from z (B, latent_dim) and, for a conditional generator, labels (B,)."""
        if self.num_classes:
            if labels is None:
                raise UserError("this generator is class-conditional: pass labels (B,) with z")
            z = torch.cat([z, self.embed(labels).to(z.dtype)], 1)  # (B, latent_dim + embed_dim)
        return self.net(z[:, :, None, None])  # (B, z_in, 1, 1) → (B, C, H, W)


class Discriminator(nn.Module):
    """DCGAN discriminator: image (B, channels, H, W) → one real/fake **logit** per image, shape (B,).

    Args:
        channels: image channels; the CLI sets it from the data.
        image_size: 28, 32, 64 or 128; the CLI sets it from the data.
        width: channels of the first level (``ndf``); deeper levels double it.
        norm: normalisation of the hidden levels: ``batch`` (the paper), ``layer`` (for WGAN-GP, whose per-sample
            gradient penalty forbids batch norm), ``instance`` or ``none``. The first level never has one.
        spectral_norm: divide every convolution's weight by its largest singular value (Miyato et al. 2018; one
            power iteration per training forward, its vectors kept as buffers, so they are checkpointed).
        num_classes: classes of a projection discriminator (0: unconditional); the CLI sets it from the data when
            the model is ``conditional``.
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 32,
        width: int = 64,
        norm: Literal["batch", "layer", "instance", "none"] = "batch",
        spectral_norm: bool = False,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_sizes(self, channels=channels, width=width)
        check_sizes(self, 0, num_classes=num_classes)
        self.num_classes = num_classes
        base, levels = _levels(image_size)
        self.image_shape = (channels, image_size, image_size)
        c = width
        layers: list[nn.Module] = [
            nn.Conv2d(channels, c, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for _ in range(levels - 1):
            layers += [
                nn.Conv2d(c, c * 2, 4, 2, 1, bias=False),
                _norm(norm, c * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            c *= 2
        layers += [nn.Conv2d(c, 1, base, 1, 0, bias=False)]  # (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)
        if spectral_norm:  # after the init: the parametrization normalises whatever weight it is given
            for i, layer in enumerate(self.net):
                if isinstance(layer, nn.Conv2d):
                    self.net[i] = parametrizations.spectral_norm(layer)
        if self.num_classes:  # V of the projection term: one feature-sized vector per class
            self.embed = nn.Embedding(self.num_classes, c)
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
            if spectral_norm:
                self.embed = parametrizations.spectral_norm(self.embed)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """One logit per image (B,); a projection discriminator also takes the labels y (B,)."""
        if not self.num_classes:
            return self.net(x).flatten()  # (B, 1, 1, 1) → (B,)
        if y is None:
            raise UserError("this discriminator is class-conditional (projection): pass labels y (B,) with x")
        h = self.net[:-1](x)  # φ(x): (B, c, base, base)
        projection = (self.embed(y).to(h.dtype) * h.sum((2, 3))).sum(1)  # ⟨V e_y, Σ_hw φ(x)⟩: (B,)
        return self.net[-1](h).flatten() + projection  # ψ(φ(x)) + projection: (B,)


__all__ = ["Discriminator", "Generator", "dcgan_init"]
