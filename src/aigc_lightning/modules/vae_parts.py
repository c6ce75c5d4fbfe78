"""The VAE's set-up pieces that are not its objective: the optimizer (with the encoder's own learning rate) and the
decoder's output bias from the data. ``modules/vae.py`` calls them from ``configure_optimizers`` and
``on_fit_start``."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule

from aigc_lightning.errors import UserError, checked_optimizer
from aigc_lightning.schedules import build_scheduler


def vae_optimizers(vae: LightningModule) -> Any:
    """``configure_optimizers`` of ``VAE``: one optimizer (the encoder in its own group when ``encoder_lr_scale`` is
    not 1) and the optional scheduler, stepped per ``lr_scheduler_interval``."""
    params = vae.parameters()
    if vae.hparams.encoder_lr_scale != 1:
        encoder = set(vae.encoder.parameters())
        params = [
            {"params": list(vae.encoder.parameters())},
            {"params": [p for p in vae.parameters() if p not in encoder]},
        ]
    optimizer = checked_optimizer(vae.optimizer_factory, params, "model.optimizer")
    if vae.hparams.encoder_lr_scale != 1:
        optimizer.param_groups[0]["lr"] *= vae.hparams.encoder_lr_scale
    if vae.lr_scheduler_factory is None:
        return optimizer
    interval = vae.hparams.lr_scheduler_interval
    if interval == "step":  # an unset total_steps is the run's number of steps
        scheduler = build_scheduler(
            vae.lr_scheduler_factory, optimizer, lambda: int(vae.trainer.estimated_stepping_batches)
        )
    else:
        scheduler = vae.lr_scheduler_factory(optimizer)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}


@torch.no_grad()
def output_bias_from_data(vae: LightningModule, max_batches: int = 16) -> None:
    """``output_bias_from_data``: the decoder's bias from the mean of up to ``max_batches`` training batches."""
    init = getattr(vae.decoder, "init_output_bias", None)
    datamodule = vae.trainer.datamodule
    if init is None or datamodule is None:
        raise UserError(
            "model.output_bias_from_data needs a decoder with an init_output_bias(value) method (MLPDecoder, "
            "ConvDecoder) and a DataModule to read the training images from; set it to false"
        )
    total, count = None, 0
    with torch.random.fork_rng(devices=[]):  # the shuffle and binarisation draws of this peek are not the run's
        for i, batch in enumerate(datamodule.train_dataloader()):
            x01 = vae.targets(batch[0].to(vae.device)).float()
            total = x01.sum(0) if total is None else total + x01.sum(0)
            count += x01.shape[0]
            if i + 1 == max_batches:
                break
    mean = vae.trainer.strategy.reduce(total / count, reduce_op="mean")  # (C, H, W), the same on every rank
    if vae.hparams.likelihood == "bernoulli":
        mean = torch.logit(mean.clamp(1e-3, 1 - 1e-3))  # a never-lit pixel gets p = 0.001, not -inf
    init(mean)


__all__ = ["output_bias_from_data", "vae_optimizers"]
