"""Pixel ranges: the one place images change between the model range [-1, 1] and the viewing range [0, 1].

Data, networks and modules exchange images in [-1, 1] (tanh generators); everything a person or a logger sees
(``sample``, predict outputs, grids, PNGs) and a Bernoulli likelihood's targets are in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from aigc_lightning.errors import UserError


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] → [0, 1] (float32): ``(x + 1) / 2``. Exactly -1 / 1 (binarised data) become exactly 0 / 1."""
    return (x.float() + 1) / 2


def to_signed(x01: Tensor) -> Tensor:
    """[0, 1] → [-1, 1]: ``2x - 1``."""
    return x01 * 2 - 1


def convert_channels(x: Tensor, channels: int) -> Tensor:
    """Grey → RGB by repetition, RGB → grey by ITU-R 601 luma (what PIL's ``convert("L")`` does); (N, C, H, W)."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
        return (x * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    raise UserError(
        f"cannot convert {x.shape[1]}-channel images to {channels} channels; use channels: 1 or 3"
    )


def resize_crop(x: Tensor, size: int, crop: int | None = None) -> Tensor:
    """Square images of ``size`` from float images (N, C, H, W): optionally the centre ``crop`` × ``crop`` square
    first (original pixels; CelebA's 148), then the shorter side resized to ``size`` (bilinear, antialiased) and
    the centre cropped. The one resize of the package: data, feature extractors and style inputs use it."""
    if crop is not None:
        c = min(crop, *x.shape[-2:])
        x = TF.center_crop(x, [c, c])
    if x.shape[-2:] != (size, size):
        x = TF.resize(x, [size], antialias=True)  # shorter side → size
        x = TF.center_crop(x, [size, size])
    return x


# RGB → YIQ (NTSC): Y is luma, I/Q the chroma that colour preservation keeps from the content.
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def rgb_to_yiq(x: Tensor) -> Tensor:
    """(B, 3, H, W) RGB → YIQ."""
    return torch.einsum("ij,bjhw->bihw", RGB_TO_YIQ.to(x), x)


def yiq_to_rgb(x: Tensor) -> Tensor:
    """(B, 3, H, W) YIQ → RGB (the exact inverse of ``rgb_to_yiq``)."""
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(RGB_TO_YIQ).to(x), x)


__all__ = ["convert_channels", "resize_crop", "rgb_to_yiq", "to_signed", "to_unit", "yiq_to_rgb"]
