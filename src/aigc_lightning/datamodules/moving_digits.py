"""Moving digits: scikit-learn's digits bouncing inside a frame, rendered offline (Moving MNIST's recipe,
Srivastava et al. 2015, with the digits that ship with scikit-learn: no download).

Each clip shows one (or two) digits, each with its own start position and velocity, reflected at the frame's
edges. Everything is drawn from one generator seeded by ``seed``, so the same arguments give the same clips on
every machine. Clips are served as float32 (C, T, H, W) in [-1, 1] with the (first) digit's class as label.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from jsonargparse.typing import PositiveFloat, PositiveInt
from torch import Tensor
from torch.utils.data import Dataset

from aigc_lightning.datamodules.base import ImageDataModule
from aigc_lightning.datamodules.datasets import TensorImages
from aigc_lightning.datamodules.io import fit_uint8
from aigc_lightning.errors import UserError


def bounce(start: Tensor, velocity: Tensor, frames: int, span: float) -> Tensor:
    """Positions (N, T, 2) of points moving at ``velocity`` (N, 2) from ``start`` (N, 2) inside [0, span],
    reflected at both ends (a triangle wave of the unbounded path)."""
    t = torch.arange(frames, dtype=start.dtype)[None, :, None]  # (1, T, 1)
    x = (start[:, None] + velocity[:, None] * t) % (2 * span)  # (N, T, 2)
    return torch.where(x > span, 2 * span - x, x)


def render_moving_digits(
    digits: Tensor,
    labels: Tensor,
    num_clips: int,
    frames: int,
    image_size: int,
    digit_size: int,
    num_digits: int = 1,
    speed: tuple[float, float] = (1.0, 3.0),
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """``num_clips`` clips uint8 (N, 1, T, H, W) of ``num_digits`` of ``digits`` (M, 1, digit_size, digit_size)
    uint8 bouncing in an ``image_size`` frame at a speed in [``speed``] pixels per frame, and the first digit's
    labels (N,). Overlapping digits combine by maximum."""
    g = torch.Generator().manual_seed(seed)
    span = float(image_size - digit_size)
    clips = torch.zeros(num_clips, frames, image_size, image_size, dtype=torch.uint8)
    first = None
    for _ in range(num_digits):
        pick = torch.randint(len(digits), (num_clips,), generator=g)
        first = pick if first is None else first
        start = torch.rand(num_clips, 2, generator=g) * span
        angle = torch.rand(num_clips, generator=g) * 2 * math.pi
        v = speed[0] + torch.rand(num_clips, generator=g) * (speed[1] - speed[0])
        velocity = torch.stack([angle.cos(), angle.sin()], 1) * v[:, None]  # (N, 2): (dy, dx) px per frame
        corners = bounce(start, velocity, frames, span).round().long()  # (N, T, 2)
        for i in range(num_clips):
            digit = digits[pick[i], 0]  # (d, d)
            for t in range(frames):
                y, x = corners[i, t].tolist()
                window = clips[i, t, y : y + digit_size, x : x + digit_size]
                torch.maximum(window, digit, out=window)
    return clips[:, None], labels[first]  # (N, 1, T, H, W)


class MovingDigitsDataModule(ImageDataModule):
    """Clips of scikit-learn's digits bouncing inside an ``image_size`` frame, offline and seeded; batches
    ``(x, y)`` with x (B, C, T, H, W) in [-1, 1] and y the digit's class.

    Args:
        frames: frames per clip T.
        num_clips: clips rendered (the held-out ``val_fraction`` of them serves validation and test).
        digit_size: side of a digit in pixels (scikit-learn's 8×8 digits, upsampled), below ``image_size``.
        num_digits: digits per clip (the label is the first one's class).
        min_speed: slowest speed, pixels per frame.
        max_speed: fastest speed, pixels per frame (each clip's speed is uniform in between, its direction
            uniform).
        **kwargs: ``ImageDataModule``'s arguments but ``root`` (``seed`` also seeds the rendering).
    """

    def __init__(
        self,
        frames: PositiveInt = 16,
        num_clips: PositiveInt = 4096,
        digit_size: PositiveInt = 16,
        num_digits: Literal[1, 2] = 1,
        min_speed: PositiveFloat = 1.0,
        max_speed: PositiveFloat = 3.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(root="", **kwargs)
        if digit_size >= self.image_size:
            raise UserError(
                f"--data.digit_size {digit_size} must be smaller than --data.image_size {self.image_size}; pass a "
                "smaller digit or a larger frame"
            )
        if min_speed > max_speed:
            raise UserError(f"--data.min_speed {min_speed} exceeds --data.max_speed {max_speed}; swap them")
        self.frames, self.num_clips, self.digit_size, self.num_digits = (
            frames,
            num_clips,
            digit_size,
            num_digits,
        )
        self.speed = (float(min_speed), float(max_speed))
        self._clips: tuple[Tensor, Tensor] | None = None

    def load(self, train: bool, binarize: bool, seed: int | None) -> Dataset | None:
        if not train:
            return None
        if self._clips is None:
            from sklearn.datasets import load_digits

            data = load_digits()
            x = (
                torch.from_numpy(data.images).float().mul(255 / 16).round().to(torch.uint8)[:, None]
            )  # (M, 1, 8, 8)
            digits = fit_uint8(x, self.digit_size, 1)  # (M, 1, d, d)
            clips, labels = render_moving_digits(
                digits, torch.from_numpy(data.target).long(), self.num_clips, self.frames, self.image_size,
                self.digit_size, self.num_digits, self.speed, self.seed,
            )  # fmt: skip
            if self.channels == 3:
                clips = clips.expand(-1, 3, -1, -1, -1).contiguous()
            self._clips = (clips, labels)
        return TensorImages(*self._clips, binarize, seed)


__all__ = ["MovingDigitsDataModule", "bounce", "render_moving_digits"]
