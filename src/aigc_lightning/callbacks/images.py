"""Image grids in TensorBoard: the ``ImageLogger`` callback asks the module what to show and draws the grids."""

from __future__ import annotations

import inspect

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor
from torchvision.utils import make_grid

from aigc_lightning import compat


def log_image_grid(module: LightningModule, tag: str, images: Tensor, step: int, nrow: int = 8) -> None:
    """Log images in [0, 1] (B, C, H, W) as one grid under ``tag`` at ``step``, on global rank 0.

    Lightning loggers have no common image API, so this writes through TensorBoard's ``add_image`` when the
    logger has it and silently does nothing otherwise (CSV logger, ``logger: false``).
    """
    if module.trainer.global_rank != 0:
        return
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2)
    for logger in module.loggers:
        add_image = getattr(getattr(logger, "experiment", None), "add_image", None)
        if add_image is not None:
            add_image(tag, grid, global_step=step)


def first_images(batch: object, n: int) -> Tensor | None:
    """The first ``n`` images of a DataModule batch (``(x, y)`` or ``x``), detached; ``None`` if it holds none."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return x[:n].detach().clone() if isinstance(x, Tensor) and x.ndim == 4 else None


class ImageLogger(Callback):
    """Logs ``pl_module.images_to_log(num_images)`` — a dict name → images (B, C, H, W) in [0, 1] — as TensorBoard
    grids ``train/<name>`` (8 per row), on global rank 0: after the first training batch of every ``fit``, every
    ``log_images_every_n_batches`` batches, and once more at the end of training unless the last batch was just
    logged. Any run, however short (one epoch, ``max_steps 3``), shows its grids.

    The CLI always adds it (``--images.*``). A module that has nothing to show defines no ``images_to_log``. A
    module whose ``images_to_log`` takes a ``batch`` argument (reconstructions) gets the same fixed images every
    time: the first ``num_images`` of the first validation batch (validation data are not shuffled), or of the
    first training batch when the run has no validation. The callback draws no random numbers and iterates no
    DataLoader itself, so logging images never changes the training run.

    Args:
        log_images_every_n_batches: cadence in training batches (not optimizer steps), besides the first and the
            last batch; 0 never logs.
        num_images: images per grid (a module may show fewer or arrange them in rows of 8).
    """

    def __init__(self, log_images_every_n_batches: NonNegativeInt = 200, num_images: PositiveInt = 64) -> None:
        self.log_images_every_n_batches, self.num_images = log_images_every_n_batches, num_images
        self.fixed_batch: Tensor | None = None
        self.logged_step: int | None = None  # the batch count of this fit's latest grids; None before the first

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.logged_step = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.fixed_batch is None and batch_idx == 0 and dataloader_idx == 0:
            self.fixed_batch = first_images(batch, self.num_images)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        if not self._wanted(trainer, pl_module):
            return
        if self.fixed_batch is None:
            self.fixed_batch = first_images(batch, self.num_images)
        step = compat.batches_processed(trainer)
        if self.logged_step is None or step % self.log_images_every_n_batches == 0:
            self.log_grids(pl_module, step)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step = compat.batches_processed(trainer)
        if self._wanted(trainer, pl_module) and self.logged_step not in (None, step):
            self.log_grids(pl_module, step)

    def _wanted(self, trainer: Trainer, pl_module: LightningModule) -> bool:
        return (
            getattr(pl_module, "images_to_log", None) is not None
            and self.log_images_every_n_batches > 0
            and trainer.global_rank == 0
        )

    def log_grids(self, pl_module: LightningModule, step: int) -> None:
        """Log the module's grids now, at x-axis ``step`` (training batches)."""
        images_to_log = pl_module.images_to_log
        with torch.no_grad():
            if "batch" in inspect.signature(images_to_log).parameters:
                fixed = None if self.fixed_batch is None else self.fixed_batch.to(pl_module.device)
                grids = images_to_log(self.num_images, batch=fixed)
            else:
                grids = images_to_log(self.num_images)
        for name, images in grids.items():
            log_image_grid(pl_module, f"train/{name}", images, step)
        self.logged_step = step


__all__ = ["ImageLogger", "log_image_grid"]
