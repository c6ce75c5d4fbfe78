"""Learning-rate annealing over the last part of a run, measured in the run's own length (BigGAN / StyleGAN-style).

A schedule written in absolute batches is wrong as soon as the run length changes (a config trained for 25 epochs
and the same config benchmarked for 1,500 batches); this one is a *fraction* of the run, whose length is read off
the Trainer when training starts. The learning rate of every parameter group is ``base_lr × factor``, with
``base_lr`` kept in the group itself, so the optimizer's checkpointed state carries it and a resumed run continues
exactly (the factor is a function of the batch counter alone).
"""

from __future__ import annotations

import math

from lightning.pytorch import Trainer
from torch.optim import Optimizer

from aigc_lightning.errors import UserError


def run_batches(trainer: Trainer, optimizer_steps_per_batch: int) -> int:
    """Training batches the run will do: the earlier of ``max_steps`` (optimizer steps, ``optimizer_steps_per_batch``
    per batch under manual optimisation) and ``max_epochs`` × batches per epoch; a ``UserError`` if unbounded."""
    total = math.inf
    if trainer.max_steps is not None and trainer.max_steps >= 0:
        total = trainer.max_steps // optimizer_steps_per_batch
    if trainer.max_epochs is not None and trainer.max_epochs >= 0:
        total = min(total, trainer.max_epochs * trainer.num_training_batches)
    if not math.isfinite(total) or total < 1:
        raise UserError(
            "model.lr_decay needs a run of known length; set --trainer.max_epochs or --trainer.max_steps "
            "(or --model.lr_decay 0)"
        )
    return int(total)


def linear_decay_factor(batch: int, total: int, fraction: float) -> float:
    """1 until the last ``fraction`` of ``total`` batches, then linearly down to 1 / (decay batches) at the last
    batch (0-based ``batch``); 1 everywhere when ``fraction`` is 0."""
    decay = round(fraction * total)
    if decay <= 0:
        return 1.0
    return min(1.0, max(total - batch, 1) / decay)


def set_lr_factor(optimizer: Optimizer, factor: float) -> None:
    """lr ← base_lr × factor in every parameter group; ``base_lr`` is recorded from the lr at the first call."""
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("base_lr", group["lr"]) * factor


__all__ = ["linear_decay_factor", "run_batches", "set_lr_factor"]
