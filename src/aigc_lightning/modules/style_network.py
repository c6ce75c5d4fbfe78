"""Fast style transfer (Johnson, Alahi & Fei-Fei 2016): a feed-forward network trained with perceptual losses.

Where ``StyleTransfer`` optimises the pixels of every image from scratch, this trains one network per style (or
blend of styles) on a folder of content photos; afterwards a single forward pass stylises an image or a video
frame. The loss is ``PerceptualLoss`` (``aigc_lightning.perceptual``), the one ``StyleTransfer`` optimises:
content (feature reconstruction), Gram style and total variation, weighted per layer.

Batches (from ``ContentDataModule``, RGB in [0, 1]; only the network itself works in [-1, 1]):
- fit / validate: ``(content (B, 3, S, S), styles [(3, h, w), …], weights (K,))``; the blended style Grams are
  computed once from the first batch and kept.
- predict: ``{"images": (1, 3, H, W), "names": [name]}`` or ``{"videos": [clip], "names": [name]}`` where ``clip``
  streams uint8 frame batches (``clip.frames(n)``). Images come back as ``{"images": (1, 3, H, W) in [0, 1]}``,
  videos as ``{"videos": [{"source": clip, "frames": iterator}]}``: the iterator stylises ``frame_batch_size``
  frames at a time only when the writer pulls them, so no video is ever held in memory.

Options beyond the paper: ``preserve_color`` (luminance-only transfer, Gatys et al. 2017: the losses see lumas and
the output keeps the input's chroma) and ``temporal_weight`` (a temporal loss on synthetic motion, Huang et al.
2017 / Gao et al. 2018's ReCoNet: each crop is also warped by a random smooth motion, ``motion.random_motion``, and
``stylise(warp(x))`` must equal ``warp(stylise(x))`` outside occlusions, so video frames do not flicker without any
blending after the fact). ``temporal_smoothing`` (an average over output frames) remains for predict.

Counters: ``self.batches`` (training batches), in ``checkpoint["counters"]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from jsonargparse.typing import ClosedUnitInterval, NonNegativeFloat, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from aigc_lightning.modules.hparams import PlainHyperparameters
from aigc_lightning.modules.loss_steps import LossDictSteps
from aigc_lightning.modules.pretrained import PretrainedMixin
from aigc_lightning.motion import luma, random_motion, temporal_loss, valid_mask, warp
from aigc_lightning.perceptual import PerceptualLoss
from aigc_lightning.pixels import rgb_to_yiq, to_signed, to_unit, yiq_to_rgb


class StyleNetwork(PlainHyperparameters, PretrainedMixin, LossDictSteps, LightningModule):
    """Train a feed-forward style network with content, Gram style and TV losses on VGG features.

    Args:
        network: the image transformation network, RGB [-1, 1] → [-1, 1] of the same size
            (``aigc_lightning.nets.TransformNet``).
        features: frozen feature extractor ``f(x, layers) -> {name: (B, C, h, w)}`` for RGB in [0, 1]
            (``aigc_lightning.nets.VGGFeatures``); truncated after the deepest layer used here.
        content_layers: layers whose activations the output must keep (Johnson et al.: relu2_2).
        style_layers: layers whose Gram matrices the output must match (Johnson et al.: relu1_2, relu2_2,
            relu3_3, relu4_3).
        style_layer_weights: weight per style layer; ``None``: 1 each.
        content_weight: weight of the content loss.
        style_weight: weight of the style loss.
        tv_weight: weight of the total-variation prior on the [0, 1] output (0: off).
        normalize_layers: divide each layer's loss by its target's mean square, so layers with tiny activations
            (random filters) count as much as the others; ``None``: on exactly for random features.
        optimizer: optimizer factory over the network's parameters (paper: Adam, lr 1e-3).
        frame_batch_size: video frames stylised per forward pass in predict.
        temporal_smoothing: video only: each output frame is ``a · previous output + (1 − a) · stylised frame``
            (an exponential moving average against flicker; 0: off; high values ghost on motion).
        preserve_color: luminance-only transfer: content and style losses compare lumas (the style's Grams from its
            luma), and ``stylize`` puts the network's output luma on the input's chroma (YIQ). Also usable at
            predict with a network trained without it.
        temporal_weight: weight of the temporal loss on synthetic motion (0: off; each training batch then costs
            two network passes).
        temporal_motion: size of the synthetic motion: the largest shift (fraction of the crop), zoom (± fraction)
            and rotation (radians) drawn for the temporal loss; a quarter of it as smooth non-rigid flow.
        temporal_noise: std of Gaussian noise (in [0, 1] pixels) added to the moved crop, as a camera's sensor noise
            differs from frame to frame, so a static shot is stable too.
        normalize_content: the content loss compares instance-normalised features (``PerceptualLoss``): structure
            only, so the style may set colour and contrast without a tug-of-war with the content loss.
    """

    def __init__(
        self,
        network: nn.Module,
        features: nn.Module,
        content_layers: Sequence[str] = ("relu2_2",),
        style_layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        style_layer_weights: Sequence[float] | None = None,
        content_weight: NonNegativeFloat = 1.0,
        style_weight: NonNegativeFloat = 1e5,
        tv_weight: NonNegativeFloat = 0.0,
        normalize_layers: bool | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        frame_batch_size: PositiveInt = 8,
        temporal_smoothing: ClosedUnitInterval = 0.0,
        preserve_color: bool = False,
        temporal_weight: NonNegativeFloat = 0.0,
        temporal_motion: NonNegativeFloat = 0.04,
        temporal_noise: NonNegativeFloat = 0.01,
        normalize_content: bool = False,
    ) -> None:
        super().__init__()
        # built (and the features truncated) before saving hyperparameters: their copy is then the small net too
        self.perceptual = PerceptualLoss(features, content_layers, style_layers, style_layer_weights,
                                         content_weight, style_weight, tv_weight, normalize_layers,
                                         normalize_content)  # fmt: skip
        self.save_hyperparameters()
        self.network, self.optimizer = network, optimizer
        self.batches = 0
        self._grams: dict[str, Tensor] | None = None  # blended style Grams (1, C, C), from the first batch

    # ------------------------------------------------------------------------------------------------------
    # Losses

    def _step_losses(self, batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Batch-mean weighted losses of the network's outputs for a batch's content (B, 3, S, S) in [0, 1]; the
        blended style Grams come from the first batch and are kept. In training with ``temporal_weight`` the
        batch is run twice, the second time warped by a random motion, and ``temporal`` compares the two."""
        content, styles, weights = batch
        lumas = self.hparams.preserve_color
        if self._grams is None:
            styles = [(luma(s[None])[0] if lumas else s).to(self.device) for s in styles]
            self._grams = self.perceptual.style_grams(styles, weights.to(self.device))
        moving = self.training and self.hparams.temporal_weight > 0
        x = content
        if moving:
            m = self.hparams.temporal_motion
            grid = random_motion(content, m, m, m, m / 4)  # (B, S, S, 2)
            moved = warp(content, grid) + self.hparams.temporal_noise * torch.randn_like(content)
            x = torch.cat([content, moved])  # (2B, 3, S, S)
        y = to_unit(self.network(to_signed(x)))  # (B or 2B, 3, S, S), not clamped: tanh keeps it in range
        # fp32 losses: Gram matrices of bf16 features lose most of their digits
        with torch.autocast(self.device.type, enabled=False):
            y, first = y.float(), y[: len(content)].float()
            targets = self.perceptual.targets(
                luma(content.float()) if lumas else content.float(), self._grams
            )
            losses = {
                k: v.mean() for k, v in self.perceptual(luma(first) if lumas else first, targets).items()
            }
            losses["temporal"] = first.new_zeros(())
            if moving:
                out, out_moved = y.chunk(2)
                losses["temporal"] = self.hparams.temporal_weight * temporal_loss(
                    luma(warp(out, grid)) if lumas else warp(out, grid),
                    luma(out_moved) if lumas else out_moved, valid_mask(grid)).mean()  # fmt: skip
        losses["loss"] = losses["content"] + losses["style"] + losses["tv"] + losses["temporal"]
        return content, losses

    # ------------------------------------------------------------------------------------------------------
    # fit

    def configure_optimizers(self):
        return self.optimizer(self.network.parameters())

    def images_to_log(self, n: int, batch: Tensor | None = None) -> dict[str, Tensor]:
        """For ``ImageLogger``: its fixed photos ``batch`` (B, 3, S, S) in [0, 1] — the first validation batch, i.e.
        the held-out photos, or the first training crops without validation — and their stylisations."""
        if batch is None:
            return {}
        x = batch[:n].to(self.device)
        with torch.no_grad():
            return {"content": x.clamp(0, 1), "stylized": self.stylize(x)}

    # ------------------------------------------------------------------------------------------------------
    # predict / Python API

    def stylize(self, x: Tensor) -> Tensor:
        """Stylise RGB images (B, 3, H, W) in [0, 1] (any size) → (B, 3, H, W) in [0, 1]; with
        ``preserve_color`` the output's luma on the input's chroma."""
        x = x.to(self.device)
        y = to_unit(self.network(to_signed(x)))
        if self.hparams.preserve_color:
            y = yiq_to_rgb(torch.cat([rgb_to_yiq(y)[:, :1], rgb_to_yiq(x)[:, 1:]], 1))
        return y.clamp(0, 1)

    def stylize_frames(self, batches: Iterable[Tensor]) -> Iterator[Tensor]:
        """Lazily stylise uint8 frame batches (B, H, W, 3) → uint8 (B, H, W, 3) on the CPU, with the optional
        ``temporal_smoothing`` carried across batches."""
        return stylize_video(batches, self.stylize, float(self.hparams.temporal_smoothing), self.device)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        if "images" in batch:
            return {"images": self.stylize(batch["images"].float()), "names": list(batch["names"])}
        size = self.hparams.frame_batch_size
        videos = [
            {"source": clip, "frames": self.stylize_frames(clip.frames(size))} for clip in batch["videos"]
        ]
        return {"videos": videos, "names": list(batch["names"])}


def stylize_video(batches: Iterable[Tensor], stylize, smoothing: float, device) -> Iterator[Tensor]:
    """uint8 frame batches (B, H, W, 3) → ``stylize``d uint8 batches on the CPU, lazily; with ``smoothing`` a > 0
    each output frame is ``a · previous output + (1 − a) · stylised frame``, carried across batches."""
    previous = None
    for frames in batches:
        with torch.no_grad():
            x = frames.to(device).permute(0, 3, 1, 2).float() / 255  # (B, 3, H, W)
            y = stylize(x)
            if smoothing > 0:
                for i in range(len(y)):  # sequential: frame i averages with the smoothed frame i − 1
                    previous = y[i] if previous is None else torch.lerp(y[i], previous, smoothing)
                    y[i] = previous
            yield y.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()  # (B, H, W, 3)
