"""Image grids to the logger (TensorBoard), from rank 0 only."""

from __future__ import annotations

from lightning.pytorch import LightningModule
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
