"""``WarmupCosine``: the learning-rate schedule torch has in pieces but not as one class a config can name.

Linear warm-up then cosine decay is ``SequentialLR([LinearLR, CosineAnnealingLR])`` in torch, but ``SequentialLR``
takes scheduler *instances*, which a YAML config cannot write as one ``LRSchedulerCallable``; ``OneCycleLR`` is one
class, but its ``max_lr`` is absolute (one value for every parameter group unless listed per group), so it would
flatten a module's per-group learning rates (the VAE's ``encoder_lr_scale``). This one multiplies each group's
own learning rate by the same factor.
"""

from __future__ import annotations

import math

from jsonargparse.typing import ClosedUnitInterval as Unit
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from aigc_lightning.errors import UserError


class WarmupCosine(LambdaLR):
    """Each group's lr × a factor: linear warm-up from ~0 to 1 over ``warmup_steps``, then a half cosine from 1 down
    to ``final_factor`` at ``total_steps``. Step it once per batch (the VAE's ``lr_scheduler_interval: step``).

    Args:
        optimizer: the optimizer whose groups it scales.
        warmup_steps: steps of linear warm-up (0: start at the full learning rate); at most ``total_steps`` - 1.
        total_steps: steps until the end of the decay; left unset, a module that steps per batch fills in the
            run's length (``trainer.estimated_stepping_batches``).
        final_factor: the learning rate at ``total_steps`` (and after) as a fraction of the group's own.
        last_epoch: the index of the last step done (-1: a fresh schedule), as in every torch scheduler.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: NonNegativeInt = 0,
        total_steps: PositiveInt | None = None,
        final_factor: Unit = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if total_steps is None:
            raise UserError(
                "WarmupCosine needs total_steps: set it, or step it per batch in a module that fills in the run's "
                "length (model.lr_scheduler_interval: step)"
            )
        # a run shorter than the warm-up (a smoke test with --trainer.max_steps 10) warms up over all but its last step
        self.warmup_steps = min(warmup_steps, total_steps - 1)
        self.total_steps, self.final_factor = total_steps, final_factor
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of every group's learning rate at ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.final_factor + (1 - self.final_factor) * 0.5 * (1 + math.cos(math.pi * progress))


__all__ = ["WarmupCosine"]
