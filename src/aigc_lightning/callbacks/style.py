"""``StylizedImageSaver``: style transfer's ``fit`` result as ``<log dir>/stylized.png`` (and in TensorBoard)."""

from __future__ import annotations

from pathlib import Path

from jsonargparse.typing import NonNegativeInt
from lightning.pytorch import Callback, LightningModule, Trainer
from torchvision.utils import save_image

from aigc_lightning.callbacks.images import log_image_grid


class StylizedImageSaver(Callback):
    """Writes the module's ``stylized()`` image (best so far, [0, 1]) to ``<log dir>/stylized.png``.

    The file is rewritten every ``every_n_batches`` training batches (one optimizer step each) and at the end of
    fit, when the final image also goes to the logger as ``train/stylized``. Rank 0 only.

    Args:
        every_n_batches: rewrite the PNG every this many batches while fitting (0: only at the end).
        filename: the file name inside the run's log dir.
    """

    def __init__(self, every_n_batches: NonNegativeInt = 10, filename: str = "stylized.png") -> None:
        self.every_n_batches, self.filename = every_n_batches, filename

    def path(self, trainer: Trainer) -> Path:
        """Where the PNG goes: the run's log dir (``lightning_logs/version_N``) or the default root dir."""
        return Path(trainer.log_dir or trainer.default_root_dir) / self.filename

    def _save(self, trainer: Trainer, module: LightningModule) -> None:
        if trainer.global_rank != 0 or not module.image.numel():
            return
        path = self.path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(module.stylized(), path)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if self.every_n_batches and pl_module.batches % self.every_n_batches == 0:
            self._save(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer, pl_module)
        if pl_module.image.numel():
            log_image_grid(pl_module, "train/stylized", pl_module.stylized(), trainer.global_step, nrow=1)
