"""Supervised image classification: trains the domain feature extractor that FID uses offline.

``python -m aigc_lightning fit --config configs/classifier/digits.yaml`` reproduces the classifier shipped in
``aigc_lightning/assets/digits_classifier.pt``; ``export_classifier`` (below) turns the run's checkpoint into
that file, which ``nets.DomainFeatures`` loads.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from jsonargparse.typing import ClosedUnitInterval, NonNegativeInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from aigc_lightning.errors import UserError, check_finite, checked_optimizer
from aigc_lightning.modules.hparams import PlainHyperparameters
from aigc_lightning.nets.classifier import ConvClassifier


def random_shift(x: Tensor, max_shift: int) -> Tensor:
    """Translate each image by its own random offset of up to ``max_shift`` pixels (zero = -1 background padding).

    torchvision's v2 transforms draw one offset per call, i.e. per batch here (the DataModules serve whole
    batches), so the per-sample shift is a padded crop done by hand.
    """
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)  # (B, C, H + 2s, W + 2s), background is -1
    dy = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]  # (B, 1, 1, 1)
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]  # (1, C, 1, 1)
    return padded[batch, chans, rows, cols]  # (B, C, H, W)


class Classifier(PlainHyperparameters, LightningModule):
    """Cross-entropy training of an image classifier on ``(x, y)`` batches (x in [-1, 1]).

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``test/acc``.

    Args:
        net: the classifier network, returning logits (B, num_classes); e.g. ``nets.classifier.ConvClassifier``.
        optimizer: optimizer factory for the network's parameters.
        max_shift: random translation (pixels) applied to training images, so the features do not depend on
            exact centring (generated digits are not centred as precisely as the data).
        label_smoothing: cross-entropy label smoothing.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        max_shift: NonNegativeInt = 2,
        label_smoothing: ClosedUnitInterval = 0.0,
    ) -> None:
        super().__init__()
        # With LightningCLI the saved hparams are the config (class paths), so load_from_checkpoint rebuilds the net.
        self.save_hyperparameters()
        self.net = net
        self.optimizer = optimizer

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str, batch_idx: int) -> Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        acc = (logits.argmax(dim=1) == y).float().mean()
        sync = stage != "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=sync)
        self.log(f"{stage}/acc", acc, prog_bar=stage != "train", sync_dist=sync)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self._step((random_shift(x, self.hparams.max_shift), y), "train", batch_idx)
        check_finite(loss, "train/loss", batch_idx)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val", batch_idx)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test", batch_idx)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return checked_optimizer(self.optimizer, self.net.parameters(), "model.optimizer")


def export_classifier(checkpoint: str, output: str) -> None:
    """Write a ``Classifier`` Lightning checkpoint's network as the small weights file ``DomainFeatures`` loads.

    Only the network's constructor arguments and ``state_dict`` are kept (no optimizer state), which keeps the
    digits extractor under 200 KB in the package.
    """
    if not Path(checkpoint).expanduser().is_file():
        raise UserError(f"checkpoint {checkpoint} does not exist; pass a Classifier run's checkpoints/last.ckpt")
    net = Classifier.load_from_checkpoint(checkpoint, map_location="cpu").net
    if not isinstance(net, ConvClassifier):
        raise UserError(f"{checkpoint} holds a {type(net).__name__}; export_classifier handles ConvClassifier")
    init_args = {
        "channels": net.channels,
        "image_size": net.image_size,
        "num_classes": net.num_classes,
        "width": net.body[0][0].out_channels,
        "feature_dim": net.num_features,
    }
    torch.save({"init_args": init_args, "state_dict": net.state_dict()}, output)

