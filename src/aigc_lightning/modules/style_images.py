"""Image helpers of style transfer: YIQ colour space (colour preservation) and an antialiased resize (scales)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# RGB → YIQ (NTSC): Y is luma, I/Q the chroma that colour preservation keeps from the content.
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def rgb_to_yiq(x: Tensor) -> Tensor:
    """(B, 3, H, W) RGB → YIQ."""
    return torch.einsum("ij,bjhw->bihw", RGB_TO_YIQ.to(x), x)


def yiq_to_rgb(x: Tensor) -> Tensor:
    """(B, 3, H, W) YIQ → RGB (the exact inverse of ``rgb_to_yiq``)."""
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(RGB_TO_YIQ).to(x), x)


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear, antialiased resize of (B, C, H, W) to ``size``; a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
