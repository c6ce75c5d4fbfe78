"""StyleGAN2 generator and discriminator (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN"), config-e/f: skip generator, residual discriminator, pure PyTorch (layers in ``stylegan2_layers.py``).

    z (B, latent_dim) ─mapping─▶ ws (B, num_ws, latent_dim) ─synthesis─▶ image (B, channels, size, size)

The generator's ``w_avg`` buffer (an EMA of the mapped w while training, as NVlabs) is the centre of the truncation
trick; ``from_rosinality`` fills it from a checkpoint's ``latent_avg``. Images follow the project's [-1, 1]
convention and are not clamped (neither reference clamps; a clamp would stop gradients at saturated pixels).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lightning.errors import UserError
from aigc_lightning.nets import rosinality
from aigc_lightning.nets.sizes import check_sizes
from aigc_lightning.nets.stylegan2_layers import (
    EqualConv2d,
    EqualLinear,
    NoiseMode,
    StyledConv,
    ToRGB,
    Upsample2d,
    channel_table,
    minibatch_stddev,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

NOISE_MODES = ("random", "const", "none")


def mix_styles(ws1: Tensor, ws2: Tensor, crossover: int | Tensor) -> Tensor:
    """Style mixing (StyleGAN §3.1): layers < ``crossover`` take ``ws1``, the rest ``ws2``; (B, num_ws, w_dim).

    ``crossover`` is an int or a (B,) tensor (one cut per sample, as NVlabs' training draws them); 0 gives ws2,
    num_ws gives ws1.
    """
    idx = torch.arange(ws1.shape[1], device=ws1.device)  # (num_ws,)
    cut = torch.as_tensor(crossover, device=ws1.device).reshape(-1, 1)  # (B or 1, 1)
    return torch.where((idx[None, :] < cut)[:, :, None], ws1, ws2)  # (B, num_ws, w_dim)


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator: z (B, latent_dim) → images (B, channels, image_size, image_size) in [-1, 1].

    ``G(z, truncation_psi=0.7, noise_mode="const")`` is the classic pretrained-sampling call; ``mapping`` and
    ``synthesis`` are the two halves (w space for truncation, style mixing and projection).

    Args:
        image_size: output resolution, a power of two ≥ 8; the CLI sets it from the data.
        channels: image channels (1 grey, 3 RGB); the CLI sets it from the data.
        latent_dim: size of z and of the intermediate latent w (rosinality's ``style_dim``).
        n_mlp: layers of the mapping network (8 in the paper).
        channel_multiplier: width multiplier of the resolutions ≥ 64 (2 = config-f, 1 = config-e).
        channel_base: numerator of the width table (see ``channel_table``).
        channel_max: widest feature map; e.g. 32 for a CPU-sized net.
        lr_mlp: learning-rate multiplier of the mapping network (0.01 in the paper).
        w_avg_beta: decay of the ``w_avg`` EMA updated by ``mapping`` in training mode (NVlabs: 0.995).
        truncation_cutoff: truncate only the first this many ws (None = all, as the paper's figures).
        conv_clamp: clamp every layer's activations and ToRGB output to ±this (NVlabs' 256 keeps 16-mixed from
            overflowing); None for no clamp (the reference nets' behaviour).
        num_classes: classes of a conditional generator (0: unconditional, rosinality's format); as NVlabs, a label
            embedding (normalised) joins the normalised z at the mapping network's input. The CLI sets it.
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        latent_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        channel_base: int = 16384,
        channel_max: int = 512,
        lr_mlp: float = 0.01,
        w_avg_beta: float = 0.995,
        truncation_cutoff: int | None = None,
        conv_clamp: float | None = None,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_sizes(self, 0, num_classes=num_classes)
        self.num_classes = num_classes
        check_sizes(
            self,
            channels=channels,
            latent_dim=latent_dim,
            n_mlp=n_mlp,
            channel_multiplier=channel_multiplier,
            channel_base=channel_base,
            channel_max=channel_max,
        )
        widths = channel_table(image_size, channel_base, channel_multiplier, channel_max)
        self.image_size = image_size
        self.channels = channels
        self.image_shape = (channels, image_size, image_size)
        self.latent_dim = latent_dim
        self.w_dim = latent_dim
        self.n_mlp = n_mlp
        self.channel_multiplier = channel_multiplier
        self.table_options = {
            "channel_base": channel_base,
            "channel_multiplier": channel_multiplier,
            "channel_max": channel_max,
        }
        self.w_avg_beta = w_avg_beta
        self.truncation_cutoff = truncation_cutoff
        log_size = int(math.log2(image_size))
        self.num_ws = 2 * log_size - 2  # two convs per resolution above 4, one at 4, ToRGBs share the next w

        # mapping network: pixel norm, then n_mlp equalized linear layers with the lr multiplier
        self.mlp = nn.Sequential(
            *[EqualLinear(latent_dim * (2 if i == 0 and num_classes else 1), latent_dim, lr_mul=lr_mlp, activate=True)
              for i in range(n_mlp)]
        )  # fmt: skip
        self.register_buffer("w_avg", torch.zeros(latent_dim))

        # synthesis network: learned 4x4 constant, then per resolution an up-conv, a conv and a ToRGB skip
        self.const = nn.Parameter(torch.randn(1, widths[4], 4, 4))
        self.conv = StyledConv(widths[4], widths[4], latent_dim, 4, conv_clamp=conv_clamp)
        self.to_rgb = ToRGB(widths[4], channels, latent_dim, conv_clamp)
        self.blocks = nn.ModuleList()
        for r in range(3, log_size + 1):
            c_in, c_out = widths[2 ** (r - 1)], widths[2**r]
            block = nn.Module()
            block.conv0 = StyledConv(c_in, c_out, latent_dim, 2**r, up=True, conv_clamp=conv_clamp)
            block.conv1 = StyledConv(c_out, c_out, latent_dim, 2**r, conv_clamp=conv_clamp)
            block.to_rgb = ToRGB(c_out, channels, latent_dim, conv_clamp)
            self.blocks.append(block)
        self.upsample = Upsample2d()
        if num_classes:  # NVlabs' MappingNetwork.embed: one-hot c → an embedding the size of w
            self.embed = EqualLinear(num_classes, latent_dim)

    def mapping(
        self,
        z: Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """z (B, latent_dim) (and ``labels`` (B,) if conditional) → ws (B, num_ws, w_dim), truncated towards
        ``w_avg`` when ``truncation_psi`` < 1.

        In training mode (or with ``update_w_avg=True``) the batch mean of w updates the ``w_avg`` EMA; map the
        second latent of a style-mixing pair with ``update_w_avg=False`` (NVlabs tracks only the first).
        """
        x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)  # pixel norm
        if self.num_classes:
            if labels is None:
                raise UserError("this StyleGAN2 generator is class-conditional: pass labels (B,) with z")
            y = self.embed(F.one_hot(labels, self.num_classes).to(x.dtype))  # (B, w_dim)
            x = torch.cat([x, y * torch.rsqrt(y.square().mean(1, keepdim=True) + 1e-8)], 1)  # (B, 2 w_dim)
        w = self.mlp(x)  # (B, w_dim)
        if self.training if update_w_avg is None else update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        ws = w[:, None, :].expand(-1, self.num_ws, -1)  # (B, num_ws, w_dim)
        return self.truncate(ws, truncation_psi, truncation_cutoff)

    def truncate(
        self,
        ws: Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        centre: Tensor | None = None,
    ) -> Tensor:
        """Truncation trick in w space: c + ψ (w − c) on the first ``truncation_cutoff`` ws (or the generator's
        default cutoff, or all), c = ``centre`` (e.g. each class's mean w, (B, 1, w_dim)) or ``w_avg``; ψ = 1
        returns ``ws`` unchanged."""
        if truncation_psi == 1:
            return ws
        cutoff = truncation_cutoff if truncation_cutoff is not None else self.truncation_cutoff
        cutoff = self.num_ws if cutoff is None else cutoff
        centre = (self.w_avg if centre is None else centre).to(ws.dtype)
        truncated = centre + truncation_psi * (ws - centre)
        return mix_styles(truncated, ws, cutoff)

    def synthesis(self, ws: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        """ws (B, num_ws, w_dim) — or one w (B, w_dim) for every layer — → images (B, channels, H, W)."""
        if noise_mode not in NOISE_MODES:
            raise UserError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim == 2:
            ws = ws[:, None, :].expand(-1, self.num_ws, -1)  # (B, num_ws, w_dim)
        if ws.shape[1] != self.num_ws:
            raise UserError(f"synthesis expects {self.num_ws} ws for {self.image_size} px, got {ws.shape[1]}")
        x = self.const.expand(ws.shape[0], -1, -1, -1)  # (B, C4, 4, 4)
        x = self.conv(x, ws[:, 0], noise_mode)
        img = self.to_rgb(x, ws[:, 1])
        # w index i feeds the up-conv, i + 1 the conv, i + 2 the ToRGB (which shares it with the next up-conv)
        for i, block in zip(range(1, self.num_ws, 2), self.blocks):
            x = block.conv0(x, ws[:, i], noise_mode)
            x = block.conv1(x, ws[:, i + 1], noise_mode)
            img = self.upsample(img) + block.to_rgb(x, ws[:, i + 2])
        return img

    def forward(
        self,
        z: Tensor,
        truncation_psi: float = 1.0,
        noise_mode: NoiseMode = "random",
        truncation_cutoff: int | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """z (B, latent_dim) (and ``labels`` (B,) if conditional) → images (B, channels, size, size) in [-1, 1]."""
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff, labels=labels), noise_mode)

    @torch.no_grad()
    def mean_latent(self, n: int = 10000, seed: int | None = None) -> Tensor:
        """Mean of the mapped w over ``n`` random z: (1, w_dim) (rosinality's ``mean_latent``).

        Does not touch ``w_avg``; ``G.w_avg.copy_(G.mean_latent(n)[0])`` makes it the truncation centre.
        """
        gen = None if seed is None else torch.Generator(device=self.w_avg.device).manual_seed(seed)
        z = torch.randn(n, self.latent_dim, device=self.w_avg.device, generator=gen)
        return self.mapping(z, update_w_avg=False)[:, 0].mean(0, keepdim=True)

    @classmethod
    def from_rosinality(
        cls, path_or_state_dict: str | Path | Mapping[str, Any], channels: int | None = None
    ) -> StyleGAN2Generator:
        """Load a rosinality/stylegan2-pytorch generator (``g_ema``, ``latent_avg``): see ``nets/rosinality.py``.

        Args:
            path_or_state_dict: a ``.pt`` file, its loaded dict, or a bare generator state dict.
            channels: None keeps the checkpoint's RGB; 1 gives the mean of its three channels.
        """
        return rosinality.generator_from_rosinality(cls, path_or_state_dict, channels)

    def to_rosinality(self) -> dict[str, Tensor]:
        """A state dict that rosinality's ``Generator(image_size, latent_dim, n_mlp, channel_multiplier)`` loads."""
        if self.num_classes:
            raise UserError("rosinality's format has no classes: a conditional generator cannot be exported to it")
        return rosinality.generator_to_rosinality(self)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: images (B, channels, H, W) → one real/fake **logit** per image, (B,).

    Args:
        image_size: input resolution, a power of two ≥ 8; the CLI sets it from the data.
        channels: image channels (1 or 3); the CLI sets it from the data.
        channel_multiplier: width multiplier of the resolutions ≥ 64 (as the generator's).
        channel_base: numerator of the width table (see ``channel_table``).
        channel_max: widest feature map.
        mbstd_group_size: samples per minibatch-stddev group (4; shrinks to divide the batch).
        conv_clamp: clamp the activations of every convolution (not the skips) to ±this (NVlabs 256); None: none.
        num_classes: classes of a projection discriminator (0: unconditional, rosinality's format). As NVlabs, a
            label mapping (embedding, normalisation, 8 layers at lr × 0.01) gives a vector c(y) the size of the 4x4
            width, and the logit is ⟨out(h), c(y)⟩ / √dim. The CLI sets it.
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        channel_multiplier: int = 2,
        channel_base: int = 16384,
        channel_max: int = 512,
        mbstd_group_size: int = 4,
        conv_clamp: float | None = None,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_sizes(self, 0, num_classes=num_classes)
        self.num_classes = num_classes
        check_sizes(
            self,
            channels=channels,
            channel_multiplier=channel_multiplier,
            channel_base=channel_base,
            channel_max=channel_max,
            mbstd_group_size=mbstd_group_size,
        )
        widths = channel_table(image_size, channel_base, channel_multiplier, channel_max)
        self.image_size = image_size
        self.channels = channels
        self.image_shape = (channels, image_size, image_size)
        self.channel_multiplier = channel_multiplier
        self.table_options = {
            "channel_base": channel_base,
            "channel_multiplier": channel_multiplier,
            "channel_max": channel_max,
        }
        self.mbstd_group_size = mbstd_group_size
        self.from_rgb = EqualConv2d(channels, widths[image_size], 1, conv_clamp=conv_clamp)
        self.blocks = nn.ModuleList()
        res = image_size
        while res > 4:
            block = nn.Module()
            block.conv0 = EqualConv2d(widths[res], widths[res], 3, conv_clamp=conv_clamp)
            block.conv1 = EqualConv2d(widths[res], widths[res // 2], 3, down=True, conv_clamp=conv_clamp)
            block.skip = EqualConv2d(widths[res], widths[res // 2], 1, down=True, bias=False, activate=False)
            self.blocks.append(block)
            res //= 2
        self.conv = EqualConv2d(widths[4] + 1, widths[4], 3, conv_clamp=conv_clamp)
        self.fc = EqualLinear(widths[4] * 4 * 4, widths[4], activate=True)
        self.out = EqualLinear(widths[4], widths[4] if num_classes else 1)
        if num_classes:  # NVlabs' D mapping (z_dim 0): embed c, normalise, 8 layers at lr × 0.01 → cmap
            self.embed = EqualLinear(num_classes, widths[4])
            self.cmap = nn.Sequential(
                *[EqualLinear(widths[4], widths[4], lr_mul=0.01, activate=True) for _ in range(8)]
            )

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        x = self.from_rgb(x)
        for block in self.blocks:
            # residual block scaled by 1/√2 to keep the variance (StyleGAN2, fig. 7)
            x = (block.conv1(block.conv0(x)) + block.skip(x)) * (1 / math.sqrt(2))
        x = self.conv(minibatch_stddev(x, self.mbstd_group_size))  # (B, C4, 4, 4)
        out = self.out(self.fc(x.flatten(1)))  # (B, C4·16) → (B, 1), or (B, C4) projected onto cmap below
        if not self.num_classes:
            return out.flatten()
        if labels is None:
            raise UserError("this StyleGAN2 discriminator is class-conditional: pass labels (B,) with x")
        y = self.embed(F.one_hot(labels, self.num_classes).to(out.dtype))
        cmap = self.cmap(y * torch.rsqrt(y.square().mean(1, keepdim=True) + 1e-8))  # (B, C4)
        return (out * cmap).sum(1) / math.sqrt(cmap.shape[1])  # (B,)

    @classmethod
    def from_rosinality(
        cls, path_or_state_dict: str | Path | Mapping[str, Any], channels: int | None = None
    ) -> StyleGAN2Discriminator:
        """Load a rosinality/stylegan2-pytorch discriminator (``d``): see ``nets/rosinality.py``.

        Args:
            path_or_state_dict: a ``.pt`` file, its loaded dict, or a bare discriminator state dict.
            channels: None keeps the checkpoint's RGB input; 1 feeds a grey image to all three inputs.
        """
        return rosinality.discriminator_from_rosinality(cls, path_or_state_dict, channels)

    def to_rosinality(self) -> dict[str, Tensor]:
        """A state dict that rosinality's ``Discriminator(image_size, channel_multiplier)`` loads."""
        if self.num_classes:
            raise UserError("rosinality's format has no classes: a conditional discriminator cannot be exported to it")
        return rosinality.discriminator_to_rosinality(self)


def networks_from_rosinality(
    path_or_state_dict: str | Path | Mapping[str, Any], channels: int | None = None
) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator | None]:
    """The generator (``g_ema``, ``latent_avg``) of a rosinality checkpoint, in training mode, and its discriminator
    (``d``) or None when the file has none; the file is read once."""
    ckpt = rosinality.load_checkpoint(path_or_state_dict)
    generator = StyleGAN2Generator.from_rosinality(ckpt, channels).train()
    discriminator = StyleGAN2Discriminator.from_rosinality(ckpt, channels) if "d" in ckpt else None
    return generator, discriminator


__all__ = [
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "channel_table",
    "mix_styles",
    "networks_from_rosinality",
]
