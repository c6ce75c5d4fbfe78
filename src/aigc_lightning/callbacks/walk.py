"""Latent-walk videos from any generator: ``predict --config CFG --ckpt_path CKPT --video walk.mp4``.

The walk visits ``num_keys`` key latents (from seeds S, S+1, …) and glides between them at constant speed:
spherical interpolation in z (DCGAN, VAE: Gaussian latents keep their norm; White 2016), linear interpolation in
w for StyleGAN2 (its mapping's output space is where straight lines look smooth; Karras et al. 2019; a
conditional StyleGAN2 between the class's mapped ws, so every frame stays in the class). With
``loop`` the path returns to the first key, and the last frame is one step before the first: the video repeats
without a seam. Frames are generated ``batch_size`` at a time and handed to the streaming H.264 writer
(``callbacks.video.write_frames``), so memory does not grow with the video's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from aigc_lightning.callbacks.video import write_frames
from aigc_lightning.errors import UserError
from aigc_lightning.seeds import randn_from_seeds, slerp


def walk_positions(num_frames: int, num_keys: int, loop: bool) -> Tensor:
    """Frame i's position on the key path, in [0, num_keys) (loop) or [0, num_keys − 1] (no loop), evenly spaced:
    the integer part names the segment's start key, the fraction how far along it is. (num_frames,)"""
    if loop:
        return torch.arange(num_frames, dtype=torch.float64) * num_keys / num_frames
    if num_frames == 1:
        return torch.zeros(1, dtype=torch.float64)
    return torch.linspace(0, num_keys - 1, num_frames, dtype=torch.float64)


def path_points(keys: Tensor, positions: Tensor, spherical: bool) -> Tensor:
    """Points at ``positions`` (N,) on the path through ``keys`` (K, …), closed (key K ≡ key 0): (N, …)."""
    k = keys.shape[0]
    start = positions.floor().long().clamp(max=k - 1)
    t = (positions - start).to(keys.dtype).view(-1, *([1] * (keys.ndim - 1)))  # (N, 1, …)
    a, b = keys[start], keys[(start + 1) % k]
    if spherical:
        flat = a.flatten(1), b.flatten(1), t.flatten(1)[:, :1]
        return slerp(*flat).view_as(a)
    return torch.lerp(a, b, t)


def frames_to_uint8(images: Tensor, height: int, width: int) -> Tensor:
    """Images (B, C, H, W) in [0, 1] → uint8 RGB frames (B, height, width, 3) on the CPU (grey repeated; bilinear
    resize when the size differs)."""
    x = images.float()
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()  # (B, H, W, 3)


def even_size(image_shape: tuple[int, int], size: int) -> tuple[int, int]:
    """(height, width) with the shorter side ``size`` (0: the model's own), aspect kept, both even (yuv420p)."""
    h, w = image_shape
    if size > 0:
        scale = size / min(h, w)
        h, w = round(h * scale), round(w * scale)
    return h + h % 2, w + w % 2


class LatentWalk:
    """The frames of a latent walk through a GAN or VAE (any ``sample``-able module with ``latent_dim``).

    Args:
        model: a ``GAN`` (``generate``; StyleGAN2 ``StyleLatents`` walk in w) or ``VAE`` (``decode``).
        num_frames: frames in the video (seconds × fps).
        num_keys: key latents visited (from seeds ``seed`` … ``seed + num_keys − 1``).
        loop: return to the first key, seamlessly.
        seed: the first key's seed.
        label: class of every frame for a conditional model (``None``: class 0).
    """

    def __init__(self, model: Any, num_frames: int, num_keys: int = 4, loop: bool = False, seed: int = 0,
                 label: int | None = None) -> None:  # fmt: skip
        if num_keys < 2:
            raise UserError(f"--video_keys {num_keys} is too few; a walk needs at least 2 key latents")
        self.model, self.num_frames, self.num_keys, self.loop = model, num_frames, num_keys, loop
        self.seed, self.label = seed, label

    def _labels(self, n: int, device: torch.device) -> Tensor | None:
        if not getattr(self.model, "num_classes", 0):
            return None
        return torch.full((n,), int(self.label or 0), dtype=torch.long, device=device)

    def _in_w(self) -> bool:
        latents = getattr(self.model, "latents", None)
        return bool(getattr(latents, "gives_ws", False))

    @torch.no_grad()
    def keys(self) -> Tensor:
        """The key points: z (K, D), or for StyleGAN2 the truncated ws (K, num_ws, w_dim) — for a conditional
        StyleGAN2 the class's mapped ws, truncated towards that class's own mean w (as ``GAN.generate``)."""
        model = self.model
        device = model.device
        z = randn_from_seeds(torch.arange(self.seed, self.seed + self.num_keys), (model.latent_dim,), device)
        if not self._in_w():
            return z
        centre = model.mean_latent()  # refreshes the EMA generator's state, as generate does
        g = model.generator_ema.eval()
        psi, labels = model.hparams.truncation_psi, self._labels(len(z), device)
        if labels is None:
            return g.mapping(z, truncation_psi=psi, update_w_avg=False)
        ws = g.mapping(z, update_w_avg=False, labels=labels)  # the class is in every w of the path
        return g.truncate(ws, psi, centre=centre[labels][:, None])

    @torch.no_grad()
    def render(self, points: Tensor) -> Tensor:
        """Images (B, C, H, W) in [0, 1] at path points (z, or ws for StyleGAN2)."""
        model, labels = self.model, self._labels(len(points), points.device)
        if self._in_w():
            from aigc_lightning.pixels import to_unit

            g = model.generator_ema.eval()
            return to_unit(g.synthesis(points, noise_mode=model.hparams.noise_mode)).clamp(0, 1)
        if hasattr(model, "generate"):  # GAN: truncation and the EMA generator
            return model.generate(points) if labels is None else model.generate(points, labels=labels)
        return model.mean_image(model.decode(points) if labels is None else model.decode(points, labels))

    def frames(self, batch_size: int = 16) -> Iterator[Tensor]:
        """Images (B, C, H, W) in [0, 1], ``batch_size`` frames at a time, generated only when pulled."""
        keys = self.keys()
        positions = walk_positions(self.num_frames, self.num_keys, self.loop)
        spherical = not self._in_w()
        for chunk in positions.split(batch_size):
            yield self.render(path_points(keys, chunk.to(keys.device), spherical))


class LatentWalkVideo(Callback):
    """Writes a latent-walk video of the predict model once its weights are loaded (``on_predict_start``).

    Args:
        path: the MP4 to write (replaced only when complete).
        seconds: length; the video has ``round(seconds · fps)`` frames.
        fps: frame rate.
        loop: end where it started, seamlessly.
        num_keys: key latents visited.
        seed: the first key's seed.
        size: shorter side of the video in pixels (bilinear upscaling from the model's size; 0: the model's size).
        label: class for a conditional model.
        batch_size: frames generated per forward pass.
    """

    def __init__(self, path: str | Path, seconds: float = 4.0, fps: int = 24, loop: bool = False, num_keys: int = 4,
                 seed: int = 0, size: int = 256, label: int | None = None, batch_size: int = 16) -> None:  # fmt: skip
        self.path, self.seconds, self.fps, self.loop = Path(path), seconds, fps, loop
        self.num_keys, self.seed, self.size, self.label, self.batch_size = (
            num_keys,
            seed,
            size,
            label,
            batch_size,
        )
        self.written = 0

    def num_frames(self) -> int:
        return max(1, round(self.seconds * self.fps))

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        was_training = pl_module.training
        pl_module.eval()
        walk = LatentWalk(pl_module, self.num_frames(), self.num_keys, self.loop, self.seed, self.label)
        frames = walk.frames(self.batch_size)
        first = next(frames)
        h, w = even_size(tuple(first.shape[-2:]), self.size)

        def uint8_batches() -> Iterator[Tensor]:
            yield frames_to_uint8(first, h, w)
            for images in frames:
                yield frames_to_uint8(images, h, w)

        self.written = write_frames(self.path, uint8_batches(), self.fps, w, h)
        pl_module.train(was_training)
        print(f"{self.path}: {self.written} frames, {w}x{h}, {self.fps} fps")


__all__ = ["LatentWalk", "LatentWalkVideo", "even_size", "frames_to_uint8", "path_points", "walk_positions"]
