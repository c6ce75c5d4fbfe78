"""Arbitrary style transfer in real time (Huang & Belongie 2017, "Arbitrary style transfer in real-time with
adaptive instance normalization"): a frozen VGG encoder, AdaIN on its features, and a trained decoder.

``adain(content, style)`` gives the content features the style features' channel means and standard deviations
(eq. 8); ``AdaINDecoder`` mirrors VGG from the encoder's layer back to pixels with nearest-neighbour upsampling
and reflection padding (the paper's decoder: no normalisation layers). ``AdaINNet`` puts them together around a
``VGGFeatures`` encoder: any content image and any style image in, the stylised content out, with the content–style
trade-off ``alpha`` (eq. 13).

Pixels: RGB in [0, 1] into the encoder (``VGGFeatures`` normalises inside) and out of ``AdaINNet``; the decoder
itself ends in tanh ([-1, 1], the project's in-between range). Any height and width of at least
``2 ** (level - 1)`` px: each upsampling goes back to the encoder's exact size at that level.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from aigc_lightning.nets.sizes import check_sizes

# channels of VGG's relu{level}_1 (the same in VGG16 and VGG19)
VGG_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512}


def channel_stats(f: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over the spatial axes of (B, C, H, W): two (B, C, 1, 1)."""
    mean = f.mean((2, 3), keepdim=True)
    std = (f.var((2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return mean, std


def adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """AdaIN(x, y) = σ(y) (x − μ(x)) / σ(x) + μ(y) per channel (Huang & Belongie 2017, eq. 8): (B, C, H, W) with
    the style's channel statistics; ``style`` may have another size, and batch 1 for all."""
    mu_c, sd_c = channel_stats(content, eps)
    mu_s, sd_s = channel_stats(style, eps)
    return (content - mu_c) / sd_c * sd_s + mu_s


def _conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, 3))


class AdaINDecoder(nn.Module):
    """VGG's mirror from ``relu{level}_1`` features to RGB (B, 3, H, W) in [-1, 1].

    Layout for level 4 and width 64 (the paper's): conv 512→256, up, 3 × conv 256, conv 256→128, up, conv 128,
    conv 128→64, up, conv 64, conv 64→3; ReLU after every conv but the last, which is followed by tanh (where
    the paper has none: the project's networks end in [-1, 1]).

    Args:
        level: the VGG block whose first ReLU the encoder stops at (1–4; paper: 4, relu4_1).
        width: channels at full resolution (paper: 64); level k has ``width · 2^(k−1)``.
    """

    def __init__(self, level: int = 4, width: int = 64) -> None:
        super().__init__()
        check_sizes(self, width=width)
        if level not in VGG_CHANNELS:
            raise ValueError(f"level must be 1, 2, 3 or 4 (relu{{level}}_1), got {level}")
        self.level, self.width, self.in_channels = level, width, VGG_CHANNELS[level]
        blocks, ch = [], self.in_channels
        for k in range(level, 1, -1):  # one block per pooling to undo
            out = width * 2 ** (k - 2)
            layers = [_conv(ch, out), nn.ReLU()]
            # after the upsampling: as many convs as VGG has at that level (3 at level 3, 1 at levels 1–2)
            body = [m for _ in range(3 if k == 4 else 1) for m in (_conv(out, out), nn.ReLU())]
            blocks.append(nn.ModuleDict({"reduce": nn.Sequential(*layers), "body": nn.Sequential(*body)}))
            ch = out
        self.blocks = nn.ModuleList(blocks)
        self.out = _conv(ch, 3)

    def forward(self, t: Tensor, size: tuple[int, int]) -> Tensor:
        """Decode features ``t`` (B, C, h, w) to an image of ``size`` = (H, W) (the encoded image's size)."""
        h = t
        for i, block in enumerate(self.blocks):
            scale = 2 ** (
                self.level - 2 - i
            )  # this block's output level: H // scale, as VGG's pooling floors
            h = block["reduce"](h)
            h = F.interpolate(h, size=(size[0] // scale, size[1] // scale), mode="nearest")
            h = block["body"](h)  # (B, width · scale, H // scale, W // scale)
        return self.out(h).tanh()  # (B, 3, H, W)


class AdaINNet(nn.Module):
    """Encoder → AdaIN → decoder: stylise RGB content (B, 3, H, W) in [0, 1] with a style image (1 or B, 3, h, w) in
    [0, 1] → (B, 3, H, W) in [0, 1].

    Args:
        encoder: frozen ``VGGFeatures`` (``f(x, layers) -> {name: features}``), RGB [0, 1] in.
        decoder: ``AdaINDecoder`` of the encoder's level.
        alpha: content–style trade-off: the decoder gets ``alpha · AdaIN(f_c, f_s) + (1 − alpha) · f_c``.
    """

    def __init__(self, encoder: nn.Module, decoder: AdaINDecoder, alpha: float = 1.0) -> None:
        super().__init__()
        self.encoder, self.decoder, self.alpha = encoder, decoder, alpha
        self.layer = f"relu{decoder.level}_1"
        self.takes_style = True  # for export: a second image input

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        f_c = self.encoder(content, [self.layer])[self.layer]
        f_s = self.encoder(style, [self.layer])[self.layer]
        t = self.alpha * adain(f_c, f_s) + (1 - self.alpha) * f_c
        return (self.decoder(t, (content.shape[-2], content.shape[-1])) + 1).mul(0.5).clamp(0, 1)

    # The frozen encoder is fully determined by its config: out of every state dict (checkpoints hold only the
    # decoder), filled back in from the encoder itself when one is loaded (as ``PerceptualLoss`` does).

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in [k for k in state if k.startswith(prefix + "encoder.")]:
            del state[key]
        return state

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for key, value in nn.Module.state_dict(self.encoder, prefix=prefix + "encoder.").items():
            state_dict.setdefault(key, value)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
