"""VAE networks: the AIGC article's MLP (784-400-20, any image shape) and a convolutional pair for 16–64 px RGB.

Encoders map images in [0, 1] (B, C, H, W) to ``(mu, logvar)`` of q(z|x), each (B, latent_dim). Decoders map
z (B, latent_dim) to one value per pixel (B, C, H, W): the likelihood's parameter (logits for a Bernoulli, the
mean for a Gaussian). Which likelihood, the log-variance clamp and the sampling live in ``modules/vae.py``.

Conditional VAE (Sohn et al. 2015, "Learning Structured Output Representation using Deep Conditional Generative
Models"): with ``num_classes > 0`` both networks also take labels y (B,): the encoder q(z|x, y) and the decoder
p(x|z, y) see the one-hot code of y concatenated to their input (the MLPs) or to the features their linear layer
reads (the conv nets). ``num_classes`` 0 builds the unconditional networks, parameter for parameter.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from aigc_lightning.errors import UserError
from aigc_lightning.nets.sizes import check_sizes


def with_label(h: Tensor, y: Tensor | None, num_classes: int) -> Tensor:
    """``h`` (B, F) with the one-hot code of ``y`` appended, (B, F + num_classes); ``h`` itself if unconditional."""
    if not num_classes:
        return h
    if y is None:
        raise UserError("this VAE network is class-conditional: pass labels y (B,) with its input")
    return torch.cat([h, nn.functional.one_hot(y, num_classes).to(h.dtype)], 1)


class _MLPHalf(nn.Module):
    """What the article's MLP encoder and decoder share: their arguments and the image shape.

    Args:
        channels: image channels.
        image_size: image height = width.
        hidden_dim: width of the hidden layer (the article: 400).
        latent_dim: size of z (the article: 20).
        num_classes: classes of a conditional VAE (0: unconditional); the CLI sets it from the data.
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 28,
        hidden_dim: int = 400,
        latent_dim: int = 20,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_sizes(
            self, channels=channels, image_size=image_size, hidden_dim=hidden_dim, latent_dim=latent_dim
        )
        check_sizes(self, 0, num_classes=num_classes)
        self.image_shape = (channels, image_size, image_size)
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.build(channels * image_size * image_size, hidden_dim, latent_dim, num_classes)

    def build(self, pixels: int, hidden_dim: int, latent_dim: int, num_classes: int) -> None:
        raise NotImplementedError


class MLPEncoder(_MLPHalf):
    """The article's MLP encoder: flatten → ``fc1`` (ReLU) → mean head ``fc21`` and log-variance head ``fc22``.
    Arguments as ``_MLPHalf``: ``channels``, ``image_size``, ``hidden_dim``, ``latent_dim``, ``num_classes``."""

    def build(self, pixels: int, hidden_dim: int, latent_dim: int, num_classes: int) -> None:
        self.fc1 = nn.Linear(pixels + num_classes, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, latent_dim)
        self.fc22 = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = torch.relu(
            self.fc1(with_label(x.flatten(1), y, self.num_classes))
        )  # (B, C*H*W [+ K]) → (B, hidden)
        return self.fc21(h), self.fc22(h)


class MLPDecoder(_MLPHalf):
    """The article's MLP decoder: ``fc3`` (ReLU) → ``fc4`` → one parameter per pixel (no sigmoid: logits).
    Arguments as ``_MLPHalf``: ``channels``, ``image_size``, ``hidden_dim``, ``latent_dim``, ``num_classes``."""

    def build(self, pixels: int, hidden_dim: int, latent_dim: int, num_classes: int) -> None:
        self.fc3 = nn.Linear(latent_dim + num_classes, hidden_dim)
        self.fc4 = nn.Linear(hidden_dim, pixels)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        out = self.fc4(torch.relu(self.fc3(with_label(z, y, self.num_classes))))  # (B, C*H*W)
        return out.view(-1, *self.image_shape)  # (B, C, H, W)

    @torch.no_grad()
    def init_output_bias(self, value: Tensor) -> None:
        """Set the per-pixel output bias to ``value`` (C, H, W): what the decoder outputs where the hidden layer
        contributes nothing (``VAE(output_bias_from_data=True)``)."""
        self.fc4.bias.copy_(value.reshape(-1))


def _num_downsamples(image_size: int) -> int:
    """Stride-2 stages from ``image_size`` down to 4 px; the conv nets need a power of two ≥ 8."""
    n = image_size.bit_length() - 3
    if image_size < 8 or 4 * 2**n != image_size:
        raise UserError(
            f"the conv VAE nets need image_size a power of two >= 8, got {image_size}; use 16, 32 or 64, "
            "or the MLP nets for other sizes"
        )
    return n


class _ConvHalf(nn.Module):
    """What the conv encoder and decoder share: their arguments, checks and the width of each stride-2 stage.

    Args:
        channels: image channels.
        image_size: image height = width (power of two ≥ 8).
        width: channels of the encoder's first convolution (the decoder mirrors the encoder).
        latent_dim: size of z.
        num_classes: classes of a conditional VAE (0: unconditional); the CLI sets it from the data.
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 64,
        width: int = 32,
        latent_dim: int = 128,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_sizes(self, channels=channels, width=width, latent_dim=latent_dim)
        self.image_shape = (channels, image_size, image_size)
        self.latent_dim = latent_dim
        widths = [width * min(2**i, 8) for i in range(_num_downsamples(image_size))]  # the encoder's stages
        check_sizes(self, 0, num_classes=num_classes)
        self.num_classes = num_classes
        self.build(channels, widths, latent_dim, num_classes)

    def build(self, channels: int, widths: list[int], latent_dim: int, num_classes: int) -> None:
        raise NotImplementedError


class ConvEncoder(_ConvHalf):
    """Stride-2 4×4 convolutions down to 4×4 (width doubling, capped at 8×), then linear mean / log-variance heads.
    Arguments as ``_ConvHalf``: ``channels``, ``image_size``, ``width``, ``latent_dim``, ``num_classes``.

    No normalisation layers: BatchNorm would make q(z|x) depend on the rest of the batch, and the importance-
    weighted bound evaluates many z per image.
    """

    def build(self, channels: int, widths: list[int], latent_dim: int, num_classes: int) -> None:
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise([channels, *widths]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.mean = nn.Linear(widths[-1] * 16 + num_classes, latent_dim)
        self.logvar = nn.Linear(widths[-1] * 16 + num_classes, latent_dim)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = with_label(self.features(x).flatten(1), y, self.num_classes)  # (B, c, 4, 4) → (B, c*16 [+ K])
        return self.mean(h), self.logvar(h)


class ConvDecoder(_ConvHalf):
    """Linear to 4×4, then stride-2 4×4 transposed convolutions up to ``image_size``; one value per pixel.
    Arguments as ``_ConvHalf``: ``channels``, ``image_size``, ``width``, ``latent_dim``, ``num_classes``."""

    def build(self, channels: int, widths: list[int], latent_dim: int, num_classes: int) -> None:
        widths = widths[::-1]  # mirror of the encoder
        self.c0 = widths[0]
        self.fc = nn.Linear(latent_dim + num_classes, self.c0 * 16)
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
        layers.append(nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = torch.nn.functional.leaky_relu(self.fc(with_label(z, y, self.num_classes)), 0.2)
        h = h.view(-1, self.c0, 4, 4)  # (B, c0, 4, 4)
        return self.features(h)  # (B, C, H, W)

    @torch.no_grad()
    def init_output_bias(self, value: Tensor) -> None:
        """Set the last layer's bias from ``value`` (C, H, W): a convolution has one bias per channel, so the
        channel's mean over pixels."""
        self.features[-1].bias.copy_(value.mean((1, 2)))


__all__ = ["ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder"]
