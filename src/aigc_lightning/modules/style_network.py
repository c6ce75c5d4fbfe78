"""Fast style transfer (Johnson, Alahi & Fei-Fei 2016): a feed-forward network trained with perceptual losses.

Where ``StyleTransfer`` optimises the pixels of every image from scratch, this trains one network per style (or
blend of styles) on a folder of content photos; afterwards a single forward pass stylises an image or a video
frame. The losses are the project's Gatys losses on frozen VGG features: content (feature reconstruction), Gram
style and total variation, weighted per layer.

Batches (from ``ContentDataModule``, pixels in [-1, 1]):
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
from aigc_lightning.errors import UserError, check_finite
from aigc_lightning.losses import content_loss, gram_matrix, style_loss, total_variation
from aigc_lightning.modules.hparams import PlainHyperparameters
from aigc_lightning.pixels import to_signed, to_unit


class StyleNetwork(PlainHyperparameters, LightningModule):
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
        if hasattr(features, "truncate"):  # before saving hyperparameters: their copy is the small net too
            features = features.truncate(list(content_layers) + list(style_layers))
        self.save_hyperparameters()
        if style_layer_weights is not None and len(style_layer_weights) != len(style_layers):
            raise UserError(
                f"style_layer_weights has {len(style_layer_weights)} numbers but style_layers has "
                f"{len(style_layers)} layers; give one weight per style layer"
            )
        self.network, self.features, self.optimizer = network, features, optimizer
        self.content_layers, self.style_layers = list(content_layers), list(style_layers)
        self.layer_weights = [1.0] * len(style_layers) if style_layer_weights is None else list(style_layer_weights)
        self.normalize = (
            bool(getattr(features, "random_features", False)) if normalize_layers is None else normalize_layers
        )
        self.batches = 0
        self._grams: dict[str, Tensor] | None = None  # blended style Grams (1, C, C), from the first batch

    # ------------------------------------------------------------------------------------------------------
    # Losses

    def style_targets(self, styles: Sequence[Tensor], weights: Tensor) -> dict[str, Tensor]:
        """Blended Gram targets Σ_k w_k G(style_k) per style layer, styles (3, h, w) in [-1, 1]: {name: (1, C, C)}.

        Each style is run alone: styles of different sizes cannot share a batch, and a Gram is size-normalised.
        """
        grams: dict[str, Tensor] = {}
        with torch.no_grad():
            for style, w in zip(styles, weights):
                f = self.features(to_unit(style[None].to(self.device)), self.style_layers)
                for n in self.style_layers:
                    grams[n] = grams.get(n, 0) + w.to(self.device) * gram_matrix(f[n].float())
        return grams

    def objective(self, y: Tensor, x: Tensor) -> dict[str, Tensor]:
        """Weighted per-sample losses of outputs ``y`` for inputs ``x`` (both (B, 3, H, W) in [0, 1]), averaged
        over the batch; ``"loss"`` is their sum."""
        assert self._grams is not None
        with torch.no_grad():
            f_x = self.features(x, self.content_layers)
        f_y = self.features(y, self.content_layers + self.style_layers)
        c = torch.zeros(len(y), device=y.device)
        for n in self.content_layers:
            norm = f_x[n].pow(2).flatten(1).mean(1).clamp_min(1e-12) if self.normalize else 1.0  # (B,)
            c = c + content_loss(f_y[n], f_x[n]) / norm
        s = torch.zeros(len(y), device=y.device)
        for n, w in zip(self.style_layers, self.layer_weights):
            target = self._grams[n]
            norm = target.pow(2).mean().clamp_min(1e-12) if self.normalize else 1.0
            s = s + w * style_loss(gram_matrix(f_y[n]), target.expand(len(y), -1, -1)) / norm
        tv = total_variation(y) if self.hparams.tv_weight else torch.zeros_like(c)
        losses = {
            "content": self.hparams.content_weight * c.mean(),
            "style": self.hparams.style_weight * s.mean(),
            "tv": self.hparams.tv_weight * tv.mean(),
        }
        losses["loss"] = losses["content"] + losses["style"] + losses["tv"]
        return losses

    def _step_losses(self, batch) -> tuple[Tensor, dict[str, Tensor]]:
        content, styles, weights = batch
        if self._grams is None:
            self._grams = self.style_targets(styles, weights)
        y = to_unit(self.network(content))  # (B, 3, S, S), float32
        # fp32 losses: Gram matrices of bf16 features lose most of their digits
        with torch.autocast(self.device.type, enabled=False):
            return content, self.objective(y, to_unit(content))

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
        """For ``ImageLogger``: its fixed photos ``batch`` (B, 3, S, S) in [-1, 1] — the first validation batch, i.e.
        the held-out photos, or the first training crops without validation — and their stylisations, in [0, 1]."""
        if batch is None:
            return {}
        x = batch[:n].to(self.device)
        with torch.no_grad():
            y = self.network(x)
        return {"content": to_unit(x).clamp(0, 1), "stylized": to_unit(y).clamp(0, 1)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["counters"] = {"batches": self.batches}
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("features.")]:
            del state[key]  # frozen, rebuilt from the config: VGG16 would add 60 MB to every checkpoint
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.batches = int(checkpoint.get("counters", {}).get("batches", 0))
        state = checkpoint["state_dict"]
        for key, value in self.features.state_dict(prefix="features.").items():
            state.setdefault(key, value)

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
            return {"images": self.stylize(to_unit(batch["images"].float())), "names": list(batch["names"])}
        size = self.hparams.frame_batch_size
        videos = [{"source": clip, "frames": self.stylize_frames(clip.frames(size))} for clip in batch["videos"]]
        return {"videos": videos, "names": list(batch["names"])}
