"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same random, differentiable augmentation is applied to real and generated images before the discriminator
sees them (in both the D and the G step), so D cannot overfit a small training set and the generator still gets
gradients through the augmentation. Written by hand because torchvision's transforms are not differentiable per
sample on a batch; this follows the paper's reference implementation (github.com/mit-han-lab/data-efficient-gans)
for images in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from aigc_lightning.errors import UserError

POLICIES = ("color", "translation", "cutout")


def rand_color(x: Tensor) -> Tensor:
    """Random brightness (±0.5), saturation (×[0, 2]) and contrast (×[0.5, 1.5]) per sample."""
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)
    mean = x.mean(dim=1, keepdim=True)  # saturation: a no-op on grey images
    x = (x - mean) * (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def rand_translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ``ratio`` of its size (integer pixels), filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    ty = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=x.device), torch.arange(h, device=x.device), torch.arange(w, device=x.device),
        indexing="ij",
    )  # each (B, H, W)
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    x_pad = F.pad(x, [1, 1, 1, 1])  # (B, C, H+2, W+2): the zero border is where shifted-out pixels read from
    return x_pad.permute(0, 2, 3, 1)[gb, gx, gy].permute(0, 3, 1, 2)  # (B, H, W, C) gathered → (B, C, H, W)


def rand_cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one random square of ``ratio`` × the image size per sample."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=x.device), torch.arange(ch, device=x.device), torch.arange(cw, device=x.device),
        indexing="ij",
    )  # each (B, ch, cw)
    gx = torch.clamp(gx + ox - ch // 2, 0, h - 1)
    gy = torch.clamp(gy + oy - cw // 2, 0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask[:, None]  # (B, 1, H, W) broadcast over channels


def parse_policy(policy: str | None) -> tuple[str, ...]:
    """``"color,translation,cutout"`` → ("color", "translation", "cutout"); raises ``UserError`` on unknown names."""
    names = tuple(p.strip() for p in (policy or "").split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise UserError(f"unknown DiffAugment policy {unknown}; use a comma-separated subset of {', '.join(POLICIES)}")
    return names


def diff_augment(x: Tensor, policy: tuple[str, ...] | str) -> Tensor:
    """Apply the DiffAugment ``policy`` (in order) to a batch (B, C, H, W); identity for an empty policy."""
    names = parse_policy(policy) if isinstance(policy, str) else policy
    for name in names:
        x = {"color": rand_color, "translation": rand_translation, "cutout": rand_cutout}[name](x)
    return x.contiguous()
