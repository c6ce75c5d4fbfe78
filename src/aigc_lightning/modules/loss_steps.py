"""The fit steps shared by the feed-forward style models (``StyleNetwork``, ``AdaIN``): each computes a dict of
batch-mean weighted losses in ``_step_losses(batch) -> (content, {"loss": total, name: part, ...})``; training
minimises ``"loss"`` and logs every part, validation logs them synced across ranks, and the batch counter
``batches`` is saved as ``checkpoint["counters"]``. List it after ``PlainHyperparameters`` among the bases."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from aigc_lightning.compat import logger_records_batch
from aigc_lightning.errors import check_finite


class LossDictSteps:
    """``training_step``, ``validation_step`` and the ``batches`` counter of a model with ``_step_losses``."""

    batches: int = 0

    def _step_losses(self, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        _, losses = self._step_losses(batch)
        check_finite(losses["loss"], "train/loss", self.batches)
        if self.batches == 0 or logger_records_batch(self.trainer):  # self.log is costly; see compat
            for name, value in losses.items():
                key = "train/loss" if name == "loss" else f"train/{name}_loss"
                self.log(key, value.detach(), prog_bar=name == "loss")
        self.batches += 1
        return losses["loss"]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        content, losses = self._step_losses(batch)
        for name, value in losses.items():
            key = "val/loss" if name == "loss" else f"val/{name}_loss"
            self.log(key, value, batch_size=len(content), sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["counters"] = {"batches": self.batches}
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.batches = int(checkpoint.get("counters", {}).get("batches", 0))
