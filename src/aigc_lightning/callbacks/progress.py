"""``ProgressBar``: Lightning's tqdm bar, redrawn at most every ``min_interval`` seconds while training.

``TQDMProgressBar`` redraws every ``refresh_rate`` batches and calls ``tqdm.refresh()`` itself, which bypasses
tqdm's own ``mininterval``: at the default ``refresh_rate=1`` the MLP VAE's ~6 ms batch spent ~0.3 ms on the bar
(collecting the logged metrics for the postfix, formatting and writing the line). A batch count cannot suit every
model (one style-transfer step takes a second, a VAE batch a few milliseconds), a time limit does: slow steps still
redraw every step, fast ones ~10 times a second, as tqdm alone would. ``AigcCLI`` puts it in place of Lightning's
default bar; a bar configured in ``trainer.callbacks`` is left as it is.
"""

from __future__ import annotations

import math
import time
from typing import Any

from jsonargparse.typing import NonNegativeFloat, PositiveInt
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


class ProgressBar(TQDMProgressBar):
    """Lightning's tqdm progress bar with a time limit on training-bar redraws.

    Args:
        refresh_rate: redraw every this many batches at most (as in ``TQDMProgressBar``).
        leave: keep each epoch's finished bar on screen.
        min_interval: seconds between two redraws of the training bar; an epoch's last batch always redraws.
    """

    def __init__(
        self, refresh_rate: PositiveInt = 1, leave: bool = False, min_interval: NonNegativeFloat = 0.1
    ) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self.min_interval = min_interval
        self._last_draw = -math.inf

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.monotonic()
        bar = self.train_progress_bar
        last = bar is not None and bar.total is not None and batch_idx + 1 >= bar.total
        if now - self._last_draw < self.min_interval and not last:
            return
        self._last_draw = now
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
