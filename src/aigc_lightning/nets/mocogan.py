"""MoCoGAN's networks (Tulyakov et al. 2018, "MoCoGAN: Decomposing Motion and Content for Video Generation").

A clip is a path in the image generator's latent space: one **content** code z_C per clip, fixed over its frames,
and a **motion** code z_M(t) per frame from a GRU driven by fresh noise ε(t). Frame t is the shared DCGAN image
generator's image of [z_C, z_M(t)]. Two critics judge the result: the DCGAN image discriminator on one random
frame of each clip (are the frames real?) and a 3D-convolution video discriminator on the whole clip (is the
motion real?). ``MoCoGANDiscriminator`` holds both and returns both logits per clip, so the GAN module's losses,
R1 and steps apply to the pair unchanged (its loss is the mean of the two, the paper's sum up to a factor 2).

Clips travel as (B, C, T, H, W) in [-1, 1], PyTorch's Conv3d layout.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from aigc_lightning.nets.dcgan import Discriminator, Generator, _levels
from aigc_lightning.nets.sizes import SizeError, check_sizes


class VideoGenerator(nn.Module):
    """MoCoGAN generator: z (B, ``latent_dim``) → clip (B, channels, frames, image_size, image_size) in [-1, 1].

    ``z`` is the content code followed by the motion noise of every frame, ``[z_C (content_dim), ε(0) … ε(T-1)
    (frames · noise_dim)]``, so the GAN module's latent machinery (seeded z, EMA, batch-norm statistics) works
    unchanged; ``clip(content, noise)`` takes the two parts separately and any number of frames.

    Args:
        content_dim: size of the content code z_C (the paper: 50).
        motion_dim: size of the GRU's motion code z_M(t) (the paper: 10).
        noise_dim: size of the per-frame noise ε(t) into the GRU (the paper: 10).
        frames: clip length T in training (the paper: 16); the CLI sets it from the data.
        channels: image channels; the CLI sets it from the data.
        image_size: 28, 32, 64 or 128; the CLI sets it from the data.
        width: the DCGAN image generator's width (``ngf``).
    """

    def __init__(
        self,
        content_dim: int = 50,
        motion_dim: int = 10,
        noise_dim: int = 10,
        frames: int = 16,
        channels: int = 1,
        image_size: int = 32,
        width: int = 64,
    ) -> None:
        super().__init__()
        check_sizes(self, content_dim=content_dim, motion_dim=motion_dim, noise_dim=noise_dim, frames=frames)
        self.content_dim, self.motion_dim, self.noise_dim, self.frames = (
            content_dim,
            motion_dim,
            noise_dim,
            frames,
        )
        self.image_generator = Generator(content_dim + motion_dim, channels, image_size, width)
        self.gru = nn.GRUCell(noise_dim, motion_dim)
        self.latent_dim = content_dim + frames * noise_dim
        self.image_shape = self.image_generator.image_shape
        self.clip_shape = (channels, frames, image_size, image_size)

    def split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, content_dim + T · noise_dim) → content (B, content_dim) and noise (B, T, noise_dim)."""
        return z[:, : self.content_dim], z[:, self.content_dim :].unflatten(1, (-1, self.noise_dim))

    def motion(self, noise: Tensor) -> Tensor:
        """Motion codes (B, T, motion_dim) from per-frame noise (B, T, noise_dim): z_M(t) = GRU(ε(t), z_M(t-1))."""
        h = noise.new_zeros(noise.shape[0], self.motion_dim)
        codes = []
        for t in range(noise.shape[1]):
            h = self.gru(noise[:, t], h)
            codes.append(h)
        return torch.stack(codes, 1)  # (B, T, motion_dim)

    def clip(self, content: Tensor, noise: Tensor) -> Tensor:
        """The clip (B, C, T, H, W) of content codes (B, content_dim) moved by noise (B, T, noise_dim)."""
        b, t = noise.shape[:2]
        z_m = self.motion(noise)  # (B, T, motion_dim)
        z = torch.cat([content[:, None].expand(-1, t, -1), z_m], -1).flatten(0, 1)  # (B·T, content + motion)
        frames = self.image_generator(z)  # (B·T, C, H, W)
        return frames.unflatten(0, (b, t)).transpose(1, 2)  # (B, C, T, H, W)

    def forward(self, z: Tensor) -> Tensor:
        return self.clip(*self.split(z))


def _norm3d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "layer":  # LayerNorm over (C, T, H, W): no mixing of samples, for per-sample penalties
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class VideoDiscriminator(nn.Module):
    """3D-convolution clip critic: clip (B, channels, T, H, W) → one **logit** per clip, shape (B,).

    DCGAN's stride-2 ladder in space with 3×4×4 kernels; time is kept at the first level and halved at the others
    (MoCoGAN's video discriminator, made independent of the clip length: the last level's logits are averaged over
    the frames that remain).

    Args:
        channels: image channels; the CLI sets it from the data.
        image_size: 28, 32, 64 or 128; the CLI sets it from the data.
        width: channels of the first level; deeper levels double it.
        norm: ``batch`` (the paper), ``layer`` or ``none``; the first level never has one.
        spectral_norm: spectral normalisation of every convolution (Miyato et al. 2018).
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 32,
        width: int = 64,
        norm: Literal["batch", "layer", "none"] = "batch",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        check_sizes(self, channels=channels, width=width)
        base, levels = _levels(image_size)
        c = width
        layers: list[nn.Module] = [
            nn.Conv3d(channels, c, (3, 4, 4), (1, 2, 2), 1, bias=False),
            nn.LeakyReLU(0.2),
        ]
        for _ in range(levels - 1):
            layers += [
                nn.Conv3d(c, c * 2, (3, 4, 4), 2, 1, bias=False),
                _norm3d(norm, c * 2),
                nn.LeakyReLU(0.2),
            ]
            c *= 2
        layers += [nn.Conv3d(c, 1, (1, base, base), 1, 0, bias=False)]  # (B, 1, T', 1, 1)
        self.net = nn.Sequential(*layers)
        for layer in self.net:
            if isinstance(layer, nn.Conv3d):
                nn.init.normal_(layer.weight, 0.0, 0.02)
            elif isinstance(layer, (nn.BatchNorm3d, nn.GroupNorm)):
                nn.init.normal_(layer.weight, 1.0, 0.02)
                nn.init.zeros_(layer.bias)
        if spectral_norm:
            for i, layer in enumerate(self.net):
                if isinstance(layer, nn.Conv3d):
                    self.net[i] = parametrizations.spectral_norm(layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1).mean(1)  # (B, 1, T', 1, 1) → (B,)


class MoCoGANDiscriminator(nn.Module):
    """Both MoCoGAN critics: clip (B, C, T, H, W) → logits (B, 1 + ``image_frames``): column 0 the video
    discriminator's on the clip, the others the image discriminator's on frames drawn at random (torch's
    generator, with replacement) from each clip. A loss averaged over the columns weights the video critic by
    1 / (1 + image_frames).

    Args:
        channels: image channels; the CLI sets it from the data.
        image_size: 28, 32, 64 or 128; the CLI sets it from the data.
        width: the image discriminator's width (DCGAN ``ndf``).
        video_width: the video discriminator's width.
        norm: hidden-level normalisation of both (``batch`` as the paper; ``layer`` or ``none`` with R1).
        spectral_norm: spectral normalisation of both.
        image_frames: frames per clip the image discriminator judges (MoCoGAN draws an image batch of its own;
            more frames per clip give the image critic more data for the same generator pass).
        noise_sigma: instance noise: N(0, σ²) added to the critics' input in training mode (the official MoCoGAN
            code's ``--use_noise --noise_sigma``; it keeps the critics from separating real and fake too early).
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 32,
        width: int = 64,
        video_width: int = 64,
        norm: Literal["batch", "layer", "none"] = "batch",
        spectral_norm: bool = False,
        image_frames: int = 1,
        noise_sigma: float = 0.0,
    ) -> None:
        super().__init__()
        check_sizes(self, image_frames=image_frames)
        if noise_sigma < 0:
            raise SizeError(type(self).__name__, "noise_sigma", noise_sigma, 0)
        self.image_frames, self.noise_sigma = image_frames, float(noise_sigma)
        self.image = Discriminator(channels, image_size, width, norm, spectral_norm)
        self.video = VideoDiscriminator(channels, image_size, video_width, norm, spectral_norm)
        self.image_shape = self.image.image_shape

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.noise_sigma > 0:
            x = x + self.noise_sigma * torch.randn_like(x)
        b, _, t = x.shape[:3]
        k = self.image_frames
        pick = torch.randint(t, (b, k), device=x.device)
        rows = torch.arange(b, device=x.device)[:, None].expand(-1, k)
        frames = x.transpose(1, 2)[rows, pick]  # (B, k, C, H, W)
        image_logits = self.image(frames.flatten(0, 1)).view(b, k)  # (B·k, C, H, W) → (B, k)
        return torch.cat([self.video(x)[:, None], image_logits], 1)  # (B, 1 + k)


__all__ = ["MoCoGANDiscriminator", "VideoDiscriminator", "VideoGenerator"]
