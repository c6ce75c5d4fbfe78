"""One network for any style (Huang & Belongie 2017, "Arbitrary style transfer in real-time with adaptive instance
normalization"): a frozen VGG encoder, AdaIN, and a decoder trained on a folder of photos and a folder of styles.

After training, ``stylize(content, style)`` takes any style image, seen in training or not, in one forward pass;
``alpha`` trades content for style (eq. 13). Losses (eq. 11–12): content = the decoded image's encoder features
against the AdaIN target t; style = channel means and stds of the decoded image against the style's at each style
layer (``perceptual.moment_loss``); with random features each layer is divided by its target's mean square.
``temporal_weight`` adds the temporal loss on synthetic motion of ``StyleNetwork`` (``motion.py``).

Batches (from ``StylePairsDataModule``, RGB in [0, 1]):
- fit / validate: ``(pairs,)`` with pairs (B, 6, S, S): a content crop's RGB, then a style crop's.
- predict: ``{"images": (1, 3, H, W), "names": [name], "style": (1, 3, h, w)}`` or ``{"videos": [clip], ...}``,
  answered as ``StyleNetwork`` does (videos stylised lazily, ``frame_batch_size`` frames at a time).

Counters: ``self.batches`` (training batches), in ``checkpoint["counters"]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jsonargparse.typing import ClosedUnitInterval, NonNegativeFloat, PositiveFloat, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from aigc_lightning.errors import UserError
from aigc_lightning.modules.hparams import PlainHyperparameters
from aigc_lightning.modules.loss_steps import LossDictSteps
from aigc_lightning.modules.style_network import stylize_video
from aigc_lightning.motion import random_motion, temporal_loss, valid_mask, warp
from aigc_lightning.nets.adain import AdaINNet, channel_stats
from aigc_lightning.perceptual import moment_loss
from aigc_lightning.pixels import to_unit


class AdaIN(PlainHyperparameters, LossDictSteps, LightningModule):
    """Train an AdaIN decoder for arbitrary styles; stylise with any style image.

    Args:
        features: frozen feature extractor (``aigc_lightning.nets.VGGFeatures``; paper: ImageNet VGG19), RGB in
            [0, 1]; the encoder stops at the decoder's layer ``relu{level}_1``.
        decoder: ``aigc_lightning.nets.adain.AdaINDecoder``.
        style_layers: layers whose channel statistics the output must match (paper: relu1_1 … relu4_1).
        content_weight: weight of the content loss.
        style_weight: weight of the style loss (paper: 10 with ImageNet VGG19).
        alpha: content–style trade-off at stylisation (1: full style; 0: the content, decoded).
        normalize_layers: divide each layer's loss by its target's mean square; ``None``: on exactly for random
            features.
        optimizer: optimizer factory over the decoder's parameters (paper: Adam, lr 1e-4).
        frame_batch_size: video frames stylised per forward pass in predict.
        temporal_smoothing: video only: output frame = ``a · previous output + (1 − a) · stylised frame``.
        temporal_weight: weight of the temporal loss on synthetic motion (0: off).
        temporal_motion: size of the synthetic motion (``StyleNetwork``'s option).
        temporal_noise: std of the noise added to the moved crop (``StyleNetwork``'s option).
    """

    def __init__(
        self,
        features: nn.Module,
        decoder: nn.Module,
        style_layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1"),
        content_weight: NonNegativeFloat = 1.0,
        style_weight: NonNegativeFloat = 10.0,
        alpha: ClosedUnitInterval = 1.0,
        normalize_layers: bool | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        frame_batch_size: PositiveInt = 8,
        temporal_smoothing: ClosedUnitInterval = 0.0,
        temporal_weight: NonNegativeFloat = 0.0,
        temporal_motion: PositiveFloat = 0.04,
        temporal_noise: NonNegativeFloat = 0.01,
    ) -> None:
        super().__init__()
        layer = f"relu{getattr(decoder, 'level', 4)}_1"
        if hasattr(features, "truncate"):
            features = features.truncate([layer, *style_layers])
        self.random_features = bool(getattr(features, "random_features", False))
        self.save_hyperparameters()
        self.network = AdaINNet(features, decoder, alpha)
        self.layer, self.layers = layer, list(dict.fromkeys([*style_layers, layer]))
        self.normalize = self.random_features if normalize_layers is None else normalize_layers
        self.optimizer = optimizer
        self.batches = 0

    @property
    def decoder(self) -> nn.Module:
        return self.network.decoder

    def _encode(self, x: Tensor) -> dict[str, Tensor]:
        return self.network.encoder(x, self.layers)

    def _norm(self, target: Tensor) -> Tensor | float:
        return target.pow(2).mean().clamp_min(1e-12) if self.normalize else 1.0

    # ------------------------------------------------------------------------------------------------------
    # Losses

    def _step_losses(self, batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Batch-mean weighted losses for content/style pairs (B, 6, S, S) in [0, 1] (alpha 1, as the paper
        trains); with ``temporal_weight`` in training the content is run twice, the second time moved."""
        pairs = batch[0]
        content, style = pairs[:, :3], pairs[:, 3:]  # (B, 3, S, S) each
        moving = self.training and self.hparams.temporal_weight > 0
        x = content
        if moving:
            m = self.hparams.temporal_motion
            grid = random_motion(content, m, m, m, m / 4)  # (B, S, S, 2)
            x = torch.cat(
                [content, warp(content, grid) + self.hparams.temporal_noise * torch.randn_like(content)]
            )
        with torch.no_grad():
            f_s = self._encode(style)
            f_c = self.network.encoder(x, [self.layer])[self.layer]  # (B or 2B, C, s, s)
            s_l = f_s[self.layer].repeat(len(x) // len(content), 1, 1, 1)
            mu_s, sd_s = channel_stats(s_l)
            mu_c, sd_c = channel_stats(f_c)
            t = (f_c - mu_c) / sd_c * sd_s + mu_s  # AdaIN targets (eq. 8)
        g = to_unit(self.decoder(t, tuple(content.shape[-2:])))  # (B or 2B, 3, S, S)
        f_g = self._encode(g[: len(content)])
        losses = {
            "content": (f_g[self.layer] - t[: len(content)]).pow(2).flatten(1).mean(1).mean() / self._norm(t)
        }
        style_loss = g.new_zeros(())
        for name in self.hparams.style_layers:
            mu, sd = channel_stats(f_s[name])
            norm = self._norm(torch.cat([mu, sd], 1))
            style_loss = style_loss + moment_loss(f_g[name], mu, sd).mean() / norm
        losses["content"] = self.hparams.content_weight * losses["content"]
        losses["style"] = self.hparams.style_weight * style_loss
        losses["temporal"] = g.new_zeros(())
        if moving:
            out, out_moved = g.chunk(2)
            tl = temporal_loss(warp(out, grid), out_moved, valid_mask(grid)).mean()
            losses["temporal"] = self.hparams.temporal_weight * tl
        losses["loss"] = losses["content"] + losses["style"] + losses["temporal"]
        return content, losses

    # ------------------------------------------------------------------------------------------------------
    # fit

    def configure_optimizers(self):
        return self.optimizer(self.decoder.parameters())

    def images_to_log(self, n: int, batch: Tensor | None = None) -> dict[str, Tensor]:
        """For ``ImageLogger``: its fixed pairs ``batch`` (B, 6, S, S) in [0, 1] (held-out photos with styles):
        contents, styles and stylisations."""
        if batch is None:
            return {}
        pairs = batch[:n].to(self.device)
        with torch.no_grad():
            content, style = pairs[:, :3], pairs[:, 3:]
            return {"content": content, "style": style, "stylized": self.stylize(content, style)}

    # ------------------------------------------------------------------------------------------------------
    # predict / Python API

    def stylize(self, content: Tensor, style: Tensor, alpha: float | None = None) -> Tensor:
        """Stylise RGB content (B, 3, H, W) in [0, 1] with a style image (1 or B, 3, h, w) in [0, 1] → (B, 3, H, W)
        in [0, 1]; ``alpha`` defaults to the module's."""
        self.network.alpha = float(self.hparams.alpha if alpha is None else alpha)
        return self.network(content.to(self.device), style.to(self.device))

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        if batch.get("style") is None:
            raise UserError("AdaIN needs a style image to stylise with: pass --data.style IMAGE")
        style = batch["style"].float().to(self.device)
        if "images" in batch:
            return {"images": self.stylize(batch["images"].float(), style), "names": list(batch["names"])}
        size, a = self.hparams.frame_batch_size, float(self.hparams.temporal_smoothing)
        videos = [{"source": clip, "frames": stylize_video(clip.frames(size), lambda x: self.stylize(x, style), a,
                                                             self.device)} for clip in batch["videos"]]  # fmt: skip
        return {"videos": videos, "names": list(batch["names"])}
