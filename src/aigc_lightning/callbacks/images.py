"""Image grids in every logger: the ``ImageLogger`` callback asks the module what to show and draws the grids.

Lightning's loggers share no image API, so ``log_image_grid`` speaks each one's own (docs/share.md):
- TensorBoard (and any logger whose ``experiment`` has ``add_image``): the IMAGES tab, ``add_image``;
- ``WandbLogger``: ``log_image`` (the run's media files, shown in the W&B workspace);
- ``MLFlowLogger``: ``MlflowClient.log_image`` as artifact ``<tag>/step_<step>.png`` of the run;
- ``CSVLogger``: PNG files ``images/<tag>/step_<step>.png`` beside ``metrics.csv``.
Any other logger gets one warning, once per logger class, saying that it shows no images.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from aigc_lightning import compat

_WARNED: set[str] = set()  # logger classes already told that they get no images


def _hwc_uint8(grid: Tensor) -> np.ndarray:
    """A (C, H, W) grid in [0, 1] as an (H, W, 3) uint8 array (grey repeated to RGB, as TensorBoard shows it)."""
    x = (grid.clamp(0, 1) * 255).round().to(torch.uint8)
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]
    return x.permute(1, 2, 0).contiguous().numpy()  # (H, W, 3)


def _file_name(tag: str, step: int) -> str:
    return f"{tag}/step_{step:06d}.png"


def write_grid(logger: Logger, tag: str, grid: Tensor, step: int) -> bool:
    """Hand one grid (C, H, W) in [0, 1] to ``logger`` through its own API; ``False`` when it has none."""
    if isinstance(logger, WandbLogger):
        logger.log_image(key=tag, images=[_hwc_uint8(grid)], step=step)
    elif isinstance(logger, MLFlowLogger):
        logger.experiment.log_image(logger.run_id, _hwc_uint8(grid), artifact_file=_file_name(tag, step))
    elif isinstance(logger, CSVLogger):
        path = Path(logger.log_dir) / "images" / _file_name(tag, step)  # metrics.csv is in log_dir
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_hwc_uint8(grid)).save(path)
    elif (add_image := getattr(getattr(logger, "experiment", None), "add_image", None)) is not None:
        add_image(tag, grid, global_step=step)  # TensorBoard, and loggers that mimic its writer
    else:
        return False
    return True


def log_image_grid(module: LightningModule, tag: str, images: Tensor, step: int, nrow: int = 8) -> None:
    """Log images in [0, 1] (B, C, H, W) as one grid under ``tag`` at ``step``, on global rank 0, to every logger
    of the run through its own API (module docstring); a logger without images is warned about once."""
    if module.trainer.global_rank != 0:
        return
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2)
    for logger in module.loggers:
        if not write_grid(logger, tag, grid, step) and type(logger).__name__ not in _WARNED:
            _WARNED.add(type(logger).__name__)
            rank_zero_warn(
                f"{type(logger).__name__} has no image API known to aigc_lightning: the image grids are not "
                "logged there; add a TensorBoardLogger, WandbLogger, MLFlowLogger or CSVLogger to see them"
            )


def first_images(batch: object, n: int) -> Tensor | None:
    """The first ``n`` images of a DataModule batch (``(x, y)`` or ``x``), detached; ``None`` if it holds none."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return x[:n].detach().clone() if isinstance(x, Tensor) and x.ndim == 4 else None


class ImageLogger(Callback):
    """Logs ``pl_module.images_to_log(num_images)`` — a dict name → images (B, C, H, W) in [0, 1] — as logger
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

    def __init__(
        self, log_images_every_n_batches: NonNegativeInt = 200, num_images: PositiveInt = 64
    ) -> None:
        self.log_images_every_n_batches, self.num_images = log_images_every_n_batches, num_images
        self.fixed_batch: Tensor | None = None
        self.logged_step: int | None = (
            None  # the batch count of this fit's latest grids; None before the first
        )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.logged_step = None

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if self.fixed_batch is None and batch_idx == 0 and dataloader_idx == 0:
            self.fixed_batch = first_images(batch, self.num_images)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
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
