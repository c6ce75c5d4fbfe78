"""The perceptual loss of style transfer and projection: content, Gram style and TV terms on frozen VGG features.

``PerceptualLoss`` owns the frozen feature extractor and the layer choice; what an output must match is a typed
``Targets`` (content features and blended style Grams, each with its layer normaliser), made once by
``targets`` / ``style_grams`` and reused for every evaluation. ``forward`` returns weighted per-sample terms
(B,), the caller reduces them (``losses.py``'s convention). Users: ``StyleTransfer`` (the output pixels are the
parameters), ``StyleNetwork`` (a feed-forward net is) and ``Projector`` (``distance``: LPIPS-style).

The features are frozen and fully determined by the config, so they are left out of ``state_dict`` (VGG16 would
add ~60 MB to every checkpoint) and filled back in when a state dict is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from aigc_lightning.errors import UserError
from aigc_lightning.losses import (
    content_loss,
    gram_matrix,
    gram_matrix_fp32,
    perceptual_distance,
    style_loss,
    total_variation,
)


def moment_loss(f: Tensor, mean: Tensor, std: Tensor, eps: float = 1e-5) -> Tensor:
    """AdaIN's style loss per layer (Huang & Belongie 2017, eq. 12, squared): mean((μ(f) − μ_s)²) +
    mean((σ(f) − σ_s)²) over channels, per sample (B,), for features f (B, C, H, W) and the style's channel
    means and stds (B or 1, C, 1, 1)."""
    mu = f.mean((2, 3), keepdim=True)
    sd = (f.var((2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return (mu - mean).pow(2).flatten(1).mean(1) + (sd - std).pow(2).flatten(1).mean(1)


@dataclass
class Targets:
    """What an output must match, per layer: content features and blended style Grams, each with the divisor
    of its layer's loss (1 without layer normalisation)."""

    content: dict[str, Tensor]  # layer → (B, C, h, w)
    content_norm: dict[str, Tensor | float]  # layer → (B,) or 1
    grams: dict[str, Tensor]  # layer → (1, C, C)
    style_norm: dict[str, Tensor | float]  # layer → () or 1


class PerceptualLoss(nn.Module):
    """Content (feature reconstruction), Gram style and total-variation losses on frozen features.

    Args:
        features: frozen feature extractor ``f(x, layers) -> {name: (B, C, h, w)}`` for RGB in [0, 1]
            (``aigc_lightning.nets.VGGFeatures``); truncated after the deepest layer used here.
        content_layers: layers whose activations the output must match.
        style_layers: layers whose Gram matrices the output must match.
        style_layer_weights: weight per style layer; ``None``: 1 each.
        content_weight: weight of the content loss.
        style_weight: weight of the style loss.
        tv_weight: weight of the total-variation prior on the [0, 1] output (0: off).
        normalize_layers: divide each layer's loss by its target's mean square, so layers with tiny activations
            (random filters) count as much as the others; ``None``: on exactly for random features.
        normalize_content: compare content features after instance normalisation (each channel's mean 0 and std 1
            over positions): the content loss then asks for the structure only, leaving the per-channel means and
            contrasts, i.e. colour and texture strength, to the style loss.
    """

    def __init__(
        self,
        features: nn.Module,
        content_layers: Sequence[str] = (),
        style_layers: Sequence[str] = (),
        style_layer_weights: Sequence[float] | None = None,
        content_weight: float = 1.0,
        style_weight: float = 1.0,
        tv_weight: float = 0.0,
        normalize_layers: bool | None = None,
        normalize_content: bool = False,
    ) -> None:
        super().__init__()
        if style_layer_weights is not None and len(style_layer_weights) != len(style_layers):
            raise UserError(
                f"style_layer_weights has {len(style_layer_weights)} numbers but style_layers has "
                f"{len(style_layers)} layers; give one weight per style layer"
            )
        if hasattr(features, "truncate"):
            features = features.truncate(list(content_layers) + list(style_layers))
        # channels-last convolutions and pooling are faster (oneDNN, cuDNN), and the Gram reads them without a copy
        self.features = features.to(memory_format=torch.channels_last)
        self.content_layers, self.style_layers = list(content_layers), list(style_layers)
        self.layer_weights = (
            [1.0] * len(style_layers) if style_layer_weights is None else list(style_layer_weights)
        )
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        random_features = bool(getattr(features, "random_features", False))
        self.normalize = random_features if normalize_layers is None else normalize_layers
        self.normalize_content = normalize_content

    def _features(self, x: Tensor, layers: list[str]) -> dict[str, Tensor]:
        rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # a luma image: the same value in R, G and B
        return self.features(rgb.contiguous(memory_format=torch.channels_last), layers)

    def _content(self, f: Tensor) -> Tensor:
        """Content features as compared: instance-normalised with ``normalize_content``, else as they are."""
        if not self.normalize_content:
            return f
        mean, var = f.mean((2, 3), keepdim=True), f.var((2, 3), keepdim=True, unbiased=False)
        return (f - mean) / (var + 1e-5).sqrt()

    def _norm(self, target: Tensor, per_sample: bool) -> Tensor | float:
        if not self.normalize:
            return 1.0
        return (target.pow(2).flatten(1).mean(1) if per_sample else target.pow(2).mean()).clamp_min(1e-12)

    @torch.no_grad()
    def style_grams(self, styles: Iterable[Tensor], weights: Tensor) -> dict[str, Tensor]:
        """Blended Gram targets Σ_k w_k G(style_k) per style layer: {name: (1, C, C)}.

        Args:
            styles: style images (3, h, w) in [0, 1] (or 1-channel luma), each run alone: they may differ in size,
                and a Gram is size-normalised.
            weights: blend weight per style (K,), summing to 1.
        """
        grams: dict[str, Tensor] = {}
        for style, w in zip(styles, weights):
            f = self._features(style[None], self.style_layers)
            for n in self.style_layers:
                grams[n] = grams.get(n, 0) + w * gram_matrix(f[n].float())
        return grams

    @torch.no_grad()
    def targets(self, content: Tensor, grams: dict[str, Tensor]) -> Targets:
        """Targets for outputs of the content images ``content`` (B, 3, H, W) in [0, 1] and the ``style_grams``."""
        f = {n: self._content(v.float()) for n, v in self._features(content, self.content_layers).items()}
        return Targets(
            content=f,
            content_norm={n: 1.0 if self.normalize_content else self._norm(f[n], per_sample=True) for n in f},
            grams=grams,
            style_norm={n: self._norm(grams[n], per_sample=False) for n in grams},
        )

    def forward(self, image: Tensor, targets: Targets, bf16: bool = False) -> dict[str, Tensor]:
        """Weighted per-sample losses ``content``, ``style`` and ``tv`` (each (B,)) of ``image`` (B, C, H, W) in
        [0, 1] (RGB or luma).

        Args:
            image: the output images.
            targets: what they must match (``targets``).
            bf16: the features and Gram products in bfloat16 (about half the cost where bfloat16 is native);
                the losses stay float32 (``losses.gram_matrix_fp32``).
        """
        with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=bf16):
            f = self._features(image, self.content_layers + self.style_layers)
        c = sum(
            content_loss(self._content(f[n].float()), targets.content[n]) / targets.content_norm[n]
            for n in self.content_layers
        )
        s = sum(w * style_loss(gram_matrix_fp32(f[n]), targets.grams[n]) / targets.style_norm[n]
                for n, w in zip(self.style_layers, self.layer_weights))  # fmt: skip
        zero = image.new_zeros(len(image), dtype=torch.float32)
        tv = total_variation(image) if self.tv_weight else zero
        return {"content": self.content_weight * (c + zero), "style": self.style_weight * (s + zero),
                "tv": self.tv_weight * tv}  # fmt: skip

    def distance(self, x: Tensor, target: Tensor) -> Tensor:
        """LPIPS-style distance (``losses.perceptual_distance``) on the content layers of images ``x`` to
        ``target``, both (B, 3, H, W) in [0, 1]: (B,)."""
        f_x = self._features(x, self.content_layers)
        with torch.no_grad():
            f_t = self._features(target, self.content_layers)
        return perceptual_distance(f_x, f_t)

    # The frozen features: out of every checkpoint, back in from the config when one is loaded.

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in [k for k in state if k.startswith(prefix + "features.")]:
            del state[key]
        return state

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for key, value in nn.Module.state_dict(self.features, prefix=prefix + "features.").items():
            state_dict.setdefault(key, value)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
