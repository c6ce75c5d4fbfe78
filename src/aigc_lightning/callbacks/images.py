"""What goes to the logger: image grids (TensorBoard, rank 0 only) and which batches log their scalars."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from torchvision.utils import make_grid


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


def logger_records_batch(trainer: Trainer) -> bool:
    """Whether the logger records this training batch's ``self.log`` values (every ``log_every_n_steps``).

    Each ``self.log`` costs ~0.7 ms of CPU (Lightning moves the stored result's whole state to the value's device on
    every call): ~1 % of a width-32 DCGAN batch for 5 scalars, 30 % of an MLP VAE's. Modules log their per-batch
    scalars only where this holds (plus the first batch, so the progress bar has values from the start). The
    property is private; Lightning's own LearningRateMonitor uses it too.
    """
    return trainer._logger_connector.should_update_logs
