"""Learning-rate schedules: the one mechanism every module uses (``lr_scheduler``, an ``LRSchedulerCallable``).

A module takes ``lr_scheduler: LRSchedulerCallable | None`` and builds it with ``build_scheduler``, which fills in
``total_steps`` (the run's length) where the config left it unset, so a schedule written as a *fraction* of the run
stays right when the run length changes (a config trained for 25 epochs, the same config smoke-tested for 10
batches). Schedulers are torch ``LRScheduler``s: Lightning checkpoints their state, so a resumed run continues
exactly. Any torch scheduler works too (``CosineAnnealingLR`` …).

``WarmupCosine``: the schedule torch has in pieces but not as one class a config can name.

Linear warm-up then cosine decay is ``SequentialLR([LinearLR, CosineAnnealingLR])`` in torch, but ``SequentialLR``
takes scheduler *instances*, which a YAML config cannot write as one ``LRSchedulerCallable``; ``OneCycleLR`` is one
class, but its ``max_lr`` is absolute (one value for every parameter group unless listed per group), so it would
flatten a module's per-group learning rates (the VAE's ``encoder_lr_scale``). This one multiplies each group's
own learning rate by the same factor.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from jsonargparse.typing import ClosedUnitInterval as Unit
from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

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


class LinearDecay(LambdaLR):
    """Each group's lr × 1 until the last ``fraction`` of ``total_steps``, then linearly down to 1 / (decay steps) at
    the last step (BigGAN / StyleGAN-style annealing). A GAN steps it once per batch.

    Args:
        optimizer: the optimizer whose groups it scales.
        fraction: the last fraction of the run over which the learning rate falls; 0 keeps it constant.
        total_steps: steps of the whole run; left unset, the module fills in the run's length.
        last_epoch: the index of the last step done (-1: a fresh schedule), as in every torch scheduler.
    """

    def __init__(
        self, optimizer: Optimizer, fraction: Unit = 0.25, total_steps: PositiveInt | None = None, last_epoch: int = -1
    ) -> None:
        if total_steps is None:
            raise UserError("LinearDecay needs total_steps: set it, or use it as a module's lr_scheduler")
        self.fraction, self.total_steps = float(fraction), int(total_steps)
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of every group's learning rate at ``step`` (0-based)."""
        decay = round(self.fraction * self.total_steps)
        if decay <= 0:
            return 1.0
        return min(1.0, max(self.total_steps - step, 1) / decay)


class RampUpDown(LambdaLR):
    """NVlabs' projection schedule (stylegan2-ada-pytorch ``projector.py``): each group's lr × a factor rising linearly
    over the first ``rampup`` of ``total_steps`` and falling along a half cosine to 0 over the last ``rampdown``.

    Args:
        optimizer: the optimizer whose groups it scales.
        rampup: fraction of the steps of linear warm-up (NVlabs 0.05).
        rampdown: fraction of the steps of cosine ramp-down (NVlabs 0.25); above 1 it never reaches the top.
        total_steps: steps of the whole schedule; left unset, the module fills it in.
        last_epoch: the index of the last step done (-1: a fresh schedule), as in every torch scheduler.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        rampup: Unit = 0.05,
        rampdown: PositiveFloat = 0.25,
        total_steps: PositiveInt | None = None,
        last_epoch: int = -1,
    ) -> None:
        if total_steps is None:
            raise UserError("RampUpDown needs total_steps: set it, or use it as a module's lr_scheduler")
        self.rampup, self.rampdown, self.total_steps = float(rampup), float(rampdown), int(total_steps)
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of every group's learning rate at ``step`` (0-based), progress t = step / total_steps."""
        t = step / self.total_steps
        down = min(1.0, (1.0 - t) / self.rampdown)
        up = min(1.0, t / self.rampup) if self.rampup > 0 else 1.0
        return (0.5 - 0.5 * math.cos(down * math.pi)) * up


def build_scheduler(
    factory: Callable[..., LRScheduler], optimizer: Optimizer, total_steps: Callable[[], int]
) -> LRScheduler:
    """``factory(optimizer)``, given ``total_steps=total_steps()`` when the factory takes a ``total_steps`` that the
    config left unset (``WarmupCosine``, ``LinearDecay``, ``OneCycleLR`` without ``epochs``)."""
    if is_unset(factory, "total_steps") and is_unset(factory, "epochs", absent=True):
        return factory(optimizer, total_steps=total_steps())
    return factory(optimizer)


def is_unset(factory: Callable[..., LRScheduler], name: str, absent: bool = False) -> bool:
    """Whether ``factory`` would build its scheduler with ``name`` = None; ``absent`` when it has no such argument.

    The CLI's factories are ``functools.partial`` objects holding every configured argument in ``keywords`` (their
    signature is ``(*args, **kwargs)``); a class or function is read from its signature."""
    keywords = getattr(factory, "keywords", None)
    if isinstance(keywords, dict) and name in keywords:
        return keywords[name] is None
    try:
        parameter = inspect.signature(factory).parameters.get(name)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to fill in
        parameter = None
    return absent if parameter is None else parameter.default is None


def run_batches(trainer, optimizer_steps_per_batch: int) -> int:
    """Training batches the run will do: the earlier of ``max_steps`` (optimizer steps, ``optimizer_steps_per_batch``
    per batch under manual optimization) and ``max_epochs`` × batches per epoch; a ``UserError`` if unbounded."""
    trainer.estimated_stepping_batches  # noqa: B018 - sets up the train dataloader, hence num_training_batches
    total = math.inf
    if trainer.max_steps is not None and trainer.max_steps >= 0:
        total = trainer.max_steps // optimizer_steps_per_batch
    if trainer.max_epochs is not None and trainer.max_epochs >= 0:
        total = min(total, trainer.max_epochs * trainer.num_training_batches)
    if not math.isfinite(total) or total < 1:
        raise UserError(
            "model.lr_scheduler needs a run of known length; set --trainer.max_epochs or --trainer.max_steps "
            "(or the scheduler's total_steps)"
        )
    return int(total)


__all__ = ["LinearDecay", "RampUpDown", "WarmupCosine", "build_scheduler", "run_batches"]
