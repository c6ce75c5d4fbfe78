"""Johnson, Alahi & Fei-Fei 2016 ("Perceptual losses for real-time style transfer and super-resolution"): the
feed-forward image transformation network, with the changes everyone since uses (Ulyanov et al. 2016's instance
norm instead of batch norm; nearest-neighbour upsampling + conv instead of transposed convs, which leave
checkerboard artifacts — Odena et al. 2016, as in pytorch/examples ``fast_neural_style``).

Layout (``width`` = w): reflection-padded 9×9 conv (w) → 3×3 stride-2 (2w) → 3×3 stride-2 (4w) →
``num_residual`` residual blocks (4w) → nearest ×2 + 3×3 (2w) → nearest ×2 + 3×3 (w) → 9×9 conv (3) → tanh.
Every conv but the last is followed by an affine InstanceNorm and a ReLU.

Pixels: RGB in [-1, 1] in and out (the project's in-between range; see docs/architecture.md). Any height and
width of at least 5 px (what the 9×9 reflection padding needs), odd ones included: each upsampling goes back to
the exact size of the matching encoder level instead of doubling, so the output always has the input's size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lightning.nets.sizes import check_sizes


class ConvLayer(nn.Sequential):
    """Reflection pad + conv (+ affine InstanceNorm + ReLU); the padding keeps borders free of zero-pad seams."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, norm_act: bool = True) -> None:
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(in_ch, out_ch, kernel, stride)]
        if norm_act:
            layers += [nn.InstanceNorm2d(out_ch, affine=True), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))), no ReLU after the sum (Gross & Wilber 2016, used by Johnson et al.)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class TransformNet(nn.Module):
    """Johnson et al.'s image transformation network: RGB (B, 3, H, W) in [-1, 1] → stylised, same size, in [-1, 1].

    Args:
        width: channels of the first level (paper: 32); the deeper levels have 2× and 4× as many.
        num_residual: residual blocks at the bottleneck (paper: 5).
    """

    def __init__(self, width: int = 32, num_residual: int = 5) -> None:
        super().__init__()
        check_sizes(self, width=width)
        check_sizes(self, minimum=0, num_residual=num_residual)
        self.width, self.num_residual = width, num_residual
        self.down1 = ConvLayer(3, width, 9)
        self.down2 = ConvLayer(width, 2 * width, 3, stride=2)
        self.down3 = ConvLayer(2 * width, 4 * width, 3, stride=2)
        self.residual = nn.Sequential(*(ResidualBlock(4 * width) for _ in range(num_residual)))
        self.up1 = ConvLayer(4 * width, 2 * width, 3)
        self.up2 = ConvLayer(2 * width, width, 3)
        self.out = ConvLayer(width, 3, 9, norm_act=False)

    def forward(self, x: Tensor) -> Tensor:
        h1 = self.down1(x)  # (B, w, H, W)
        h2 = self.down2(h1)  # (B, 2w, ⌈H/2⌉, ⌈W/2⌉)
        h = self.residual(self.down3(h2))  # (B, 4w, ⌈H/4⌉, ⌈W/4⌉)
        # Upsample to the encoder's sizes, not by ×2: an odd size (17 → 9 → 5) would come back as 20.
        h = self.up1(F.interpolate(h, size=h2.shape[-2:], mode="nearest"))  # (B, 2w, ⌈H/2⌉, ⌈W/2⌉)
        h = self.up2(F.interpolate(h, size=h1.shape[-2:], mode="nearest"))  # (B, w, H, W)
        return self.out(h).tanh()  # (B, 3, H, W)
