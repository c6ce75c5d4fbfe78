"""StyleGAN2 building blocks in plain PyTorch (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN"): equalized learning rate, FIR up/down-sampling, bias + leaky ReLU, modulated convolution, noise.

NVlabs and rosinality/stylegan2-pytorch implement ``upfirdn2d`` and the fused bias + leaky ReLU as compiled CUDA
ops (a frequent build failure); here they are a few tensor operations, so the nets run on CPU, CUDA and MPS alike.
Parameters are stored the way both reference implementations store them (weights ~ N(0, 1) / lr_mul, scaled at
run time), which keeps checkpoint conversion a matter of renaming (``nets/rosinality.py``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lightning.errors import UserError

FIR_TAPS = (1, 3, 3, 1)  # the binomial filter of StyleGAN2's up/down-sampling
LRELU_GAIN = math.sqrt(2)  # keeps the activations' second moment after a leaky ReLU (He et al. 2015)


def fir_kernel(taps: tuple[int, ...] = FIR_TAPS, gain: float = 1.0) -> Tensor:
    """Separable 2-D FIR kernel outer(taps, taps) normalised to sum ``gain``: (K, K)."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[:, None] * k[None, :]  # (K, K)
    return k * (gain / k.sum())


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample by zero insertion, pad, convolve with a 2-D FIR ``kernel``, keep every ``down``-th pixel.

    The semantics of NVlabs' ``upfirdn2d`` with the same padding on both axes; ``pad`` = (before, after) may be
    negative (a crop). (B, C, H, W) → (B, C, (H·up + p0 + p1 − K) // down + 1, …).
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])  # (B, C, H, up, W, up): the sample, then up − 1 zeros
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    # conv2d is a correlation: flip to convolve, one filter per channel (depthwise)
    k = kernel.flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)  # (C, 1, K, K)
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down]


class Upsample2d(nn.Module):
    """×2 up-sampling with the [1, 3, 3, 1] filter (ToRGB skips): (B, C, H, W) → (B, C, 2H, 2W)."""

    def __init__(self) -> None:
        super().__init__()
        # gain 4 = factor²: zero insertion leaves one sample in four, the filter restores the mean
        self.register_buffer("kernel", fir_kernel(gain=4.0), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        p = self.kernel.shape[0] - 2  # taps beyond the factor, split so the output is centred
        return upfirdn2d(x, self.kernel, up=2, pad=((p + 1) // 2 + 1, p // 2))


def bias_leaky_relu(x: Tensor, bias: Tensor | None, slope: float = 0.2, gain: float = LRELU_GAIN) -> Tensor:
    """gain · leaky_relu(x + bias): the "fused_bias_act" op of NVlabs, bias over dim 1."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, slope) * gain


def clamp(x: Tensor, limit: float | None) -> Tensor:
    """x clamped to [-limit, limit], or x itself for ``limit`` None (NVlabs' ``conv_clamp``)."""
    return x if limit is None else x.clamp(-limit, limit)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: y = x (W · lr_mul/√in)ᵀ + b · lr_mul (Karras et al. 2018).

    Args:
        in_features: input size.
        out_features: output size.
        bias_init: initial value of the (effective) bias; 1 for style modulations so styles start at 1.
        lr_mul: learning-rate multiplier (0.01 in the mapping network): stored values are divided by it.
        activate: apply the scaled leaky ReLU after the bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activate: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        if self.activate:
            return bias_leaky_relu(F.linear(x, self.weight * self.weight_gain), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate, optionally halving the resolution (discriminator layers).

    Down-sampling blurs with [1, 3, 3, 1] before a stride-2 convolution (anti-aliasing, StyleGAN2 appendix B).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd square kernel size.
        down: halve the resolution.
        bias: learn a bias (added before the activation when ``activate``).
        activate: apply the scaled leaky ReLU.
        conv_clamp: clamp the activated output to [-conv_clamp, conv_clamp] (NVlabs: 256, against fp16
            overflow); None for no clamp.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        down: bool = False,
        bias: bool = True,
        activate: bool = True,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.down = down
        self.activate = activate
        self.conv_clamp = conv_clamp
        self.padding = 0 if down else kernel_size // 2
        if down:
            self.register_buffer("kernel", fir_kernel(), persistent=False)
            p = (len(FIR_TAPS) - 2) + (kernel_size - 1)  # blur + stride-2 conv then give exactly H / 2
            self.blur_pad = ((p + 1) // 2, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        if self.down:
            x = upfirdn2d(x, self.kernel, pad=self.blur_pad)
        x = F.conv2d(x, self.weight * self.weight_gain, stride=2 if self.down else 1, padding=self.padding)
        if self.activate:
            return clamp(bias_leaky_relu(x, self.bias), self.conv_clamp)
        return x if self.bias is None else x + self.bias.to(x.dtype)[None, :, None, None]


class ModulatedConv2d(nn.Module):
    """Weight (de)modulation (StyleGAN2, eq. 1–3): each sample's style scales the input channels of the kernel,
    and demodulation rescales every output channel to unit expected variance, replacing AdaIN.

    Computed as conv(x · s, W) · d, which equals a conv with the per-sample kernel W · s · d (NVlabs'
    non-fused path): one ordinary convolution for the batch instead of a grouped one.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd square kernel size.
        w_dim: size of the intermediate latent w.
        demodulate: normalise output channels (off for ToRGB).
        up: double the resolution with a transposed convolution followed by a [1, 3, 3, 1] blur.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        demodulate: bool = True,
        up: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.up = up
        self.padding = kernel_size // 2
        if up:
            self.register_buffer("kernel", fir_kernel(gain=4.0), persistent=False)
            p = (len(FIR_TAPS) - 2) - (
                kernel_size - 1
            )  # transposed conv gives 2H + K − 2; the blur trims to 2H
            self.blur_pad = ((p + 1) // 2 + 1, p // 2 + 1)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w)  # (B, in)
        weight = self.weight * self.weight_gain  # (out, in, K, K)
        x = x * styles[:, :, None, None].to(x.dtype)
        if self.up:
            # (in, out, K, K): conv_transpose2d takes the kernel as (in, out)
            x = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2)
            x = upfirdn2d(x, self.kernel, pad=self.blur_pad)
        else:
            x = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            # d_bo = 1/√(Σ_i,k (W_oik · s_bi)² + ε), computed as (s²) @ (Σ_k W²)ᵀ
            d = torch.rsqrt(
                styles.float().square() @ weight.float().square().sum([2, 3]).t() + 1e-8
            )  # (B, out)
            x = x * d[:, :, None, None].to(x.dtype)
        return x


NoiseMode = Literal["random", "const", "none"]  # fresh noise per call, the stored noise_const, no noise


class StyledConv(nn.Module):
    """Modulated conv → per-pixel noise × learned strength → bias + leaky ReLU (one synthesis layer).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        w_dim: size of w.
        resolution: output resolution (the size of the constant noise buffer).
        up: double the resolution.
        conv_clamp: clamp the activations to [-conv_clamp, conv_clamp] (None: no clamp).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: bool = False,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # a fixed noise image per layer: noise_mode="const" gives deterministic images (saved with the weights)
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: Tensor, w: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        x = self.conv(x, w)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength.to(x.dtype)
        return clamp(bias_leaky_relu(x, self.bias), self.conv_clamp)


class ToRGB(nn.Module):
    """1×1 modulated conv without demodulation to image channels, plus a bias (skip-architecture output).

    Args:
        in_channels: input channels.
        channels: image channels.
        w_dim: size of w.
        conv_clamp: clamp the output to [-conv_clamp, conv_clamp] (None: no clamp).
    """

    def __init__(self, in_channels: int, channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.conv = ModulatedConv2d(in_channels, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return clamp(self.conv(x, w) + self.bias.to(x.dtype)[None, :, None, None], self.conv_clamp)


def minibatch_stddev(x: Tensor, group_size: int = 4) -> Tensor:
    """Append the feature-averaged standard deviation over groups of samples as one channel (Karras et al. 2018,
    §3): (B, C, H, W) → (B, C + 1, H, W). Lets the discriminator see the diversity of a batch.

    Samples b, b + B/G, b + 2B/G, … form a group, as in NVlabs and rosinality. Where they require B to be divisible
    by the group size, the group here shrinks to the largest divisor of B that is ≤ ``group_size`` (a last
    batch of odd size still works; same result whenever theirs is defined).
    """
    b, c, h, w = x.shape
    g = next(d for d in range(min(group_size, b), 0, -1) if b % d == 0)
    y = x.reshape(g, b // g, c, h, w)  # (G, B/G, C, H, W)
    y = torch.sqrt(y.float().var(0, unbiased=False) + 1e-8)  # (B/G, C, H, W)
    y = y.mean([1, 2, 3])  # (B/G,)
    y = y.reshape(1, b // g, 1, 1, 1).expand(g, b // g, 1, h, w).reshape(b, 1, h, w)  # (B, 1, H, W)
    return torch.cat([x, y.to(x.dtype)], 1)


def channel_table(
    image_size: int, channel_base: int = 16384, channel_multiplier: int = 2, channel_max: int = 512
) -> dict[int, int]:
    """Feature maps per resolution 4 … image_size: min(channel_base · channel_multiplier / res, channel_max).

    The defaults reproduce rosinality's table (512 up to 32 px, then 256·cm at 64, 128·cm at 128, …) for cm 1 and
    2, i.e. NVlabs' config-e (cm 1) and config-f (cm 2); small ``channel_max`` gives CPU-sized nets.
    """
    if image_size < 8 or image_size & (image_size - 1):
        raise UserError(
            f"StyleGAN2 needs a power-of-two image_size ≥ 8, got {image_size}; set --data.image_size"
        )
    return {
        2**r: max(1, min(channel_base * channel_multiplier // 2**r, channel_max))
        for r in range(2, int(math.log2(image_size)) + 1)
    }


__all__ = [
    "EqualConv2d",
    "EqualLinear",
    "ModulatedConv2d",
    "NoiseMode",
    "StyledConv",
    "ToRGB",
    "Upsample2d",
    "bias_leaky_relu",
    "channel_table",
    "clamp",
    "fir_kernel",
    "minibatch_stddev",
    "upfirdn2d",
]
