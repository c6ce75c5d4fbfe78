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

Counters: ``self.batches`` (training batches), in ``checkpoint["counters"]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from jsonargparse.typing import ClosedUnitInterval, NonNegativeFloat, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from aigc_lightning.compat import logger_records_batch
from aigc_lightning.errors import check_finite
from aigc_lightning.modules.hparams import PlainHyperparameters
from aigc_lightning.modules.pretrained import PretrainedMixin
from aigc_lightning.perceptual import PerceptualLoss
from aigc_lightning.pixels import to_signed, to_unit


class StyleNetwork(PlainHyperparameters, PretrainedMixin, LightningModule):
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
    ) -> None:
        super().__init__()
        # built (and the features truncated) before saving hyperparameters: their copy is then the small net too
        self.perceptual = PerceptualLoss(features, content_layers, style_layers, style_layer_weights,
                                         content_weight, style_weight, tv_weight, normalize_layers)  # fmt: skip
        self.save_hyperparameters()
        self.network, self.optimizer = network, optimizer
        self.batches = 0
        self._grams: dict[str, Tensor] | None = None  # blended style Grams (1, C, C), from the first batch

    # ------------------------------------------------------------------------------------------------------
    # Losses

    def _step_losses(self, batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Batch-mean weighted losses of the network's outputs for a batch's content (B, 3, S, S) in [0, 1]; the
        blended style Grams come from the first batch and are kept."""
        content, styles, weights = batch
        if self._grams is None:
            self._grams = self.perceptual.style_grams([s.to(self.device) for s in styles], weights.to(self.device))
        y = to_unit(self.network(to_signed(content)))  # (B, 3, S, S), not clamped: tanh keeps it in range
        # fp32 losses: Gram matrices of bf16 features lose most of their digits
        with torch.autocast(self.device.type, enabled=False):
            targets = self.perceptual.targets(content.float(), self._grams)
            losses = {name: value.mean() for name, value in self.perceptual(y.float(), targets).items()}
        losses["loss"] = losses["content"] + losses["style"] + losses["tv"]
        return content, losses

    # ------------------------------------------------------------------------------------------------------
    # fit

    def configure_optimizers(self):
        return self.optimizer(self.network.parameters())

    def training_step(self, batch, batch_idx: int) -> Tensor:
        _, losses = self._step_losses(batch)
        check_finite(losses["loss"], "train/loss", self.batches)
        if self.batches == 0 or logger_records_batch(self.trainer):
            for name, value in losses.items():
                key = "train/loss" if name == "loss" else f"train/{name}_loss"
                self.log(key, value.detach(), prog_bar=name == "loss")
        self.batches += 1
        return losses["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        content, losses = self._step_losses(batch)
        for name, value in losses.items():
            key = "val/loss" if name == "loss" else f"val/{name}_loss"
            self.log(key, value, batch_size=len(content), sync_dist=True)

    def images_to_log(self, n: int, batch: Tensor | None = None) -> dict[str, Tensor]:
        """For ``ImageLogger``: its fixed photos ``batch`` (B, 3, S, S) in [0, 1] — the first validation batch, i.e.
        the held-out photos, or the first training crops without validation — and their stylisations."""
        if batch is None:
            return {}
        x = batch[:n].to(self.device)
        with torch.no_grad():
            return {"content": x.clamp(0, 1), "stylized": self.stylize(x)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["counters"] = {"batches": self.batches}
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.batches = int(checkpoint.get("counters", {}).get("batches", 0))

    # ------------------------------------------------------------------------------------------------------
    # predict / Python API

    def stylize(self, x: Tensor) -> Tensor:
        """Stylise RGB images (B, 3, H, W) in [0, 1] (any size) → (B, 3, H, W) in [0, 1]."""
        return to_unit(self.network(to_signed(x.to(self.device)))).clamp(0, 1)

    def stylize_frames(self, batches: Iterable[Tensor]) -> Iterator[Tensor]:
        """Lazily stylise uint8 frame batches (B, H, W, 3) → uint8 (B, H, W, 3) on the CPU, with the optional
        ``temporal_smoothing`` carried across batches."""
        a, previous = float(self.hparams.temporal_smoothing), None
        for frames in batches:
            with torch.no_grad():
                x = frames.to(self.device).permute(0, 3, 1, 2).float() / 255  # (B, 3, H, W)
                y = self.stylize(x)
                if a > 0:
                    for i in range(len(y)):  # sequential: frame i averages with the smoothed frame i − 1
                        previous = y[i] if previous is None else torch.lerp(y[i], previous, a)
                        y[i] = previous
                yield y.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()  # (B, H, W, 3)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        if "images" in batch:
            return {"images": self.stylize(batch["images"].float()), "names": list(batch["names"])}
        size = self.hparams.frame_batch_size
        videos = [{"source": clip, "frames": self.stylize_frames(clip.frames(size))} for clip in batch["videos"]]
        return {"videos": videos, "names": list(batch["names"])}
