"""The exceptions the CLI turns into a one-line message instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer


class UserError(RuntimeError):
    """Bad input the user can fix: the message names the cause and the fix."""


class NonFiniteLossError(UserError):
    """A loss became NaN or infinite; raised before the update, so the weights in memory are still finite."""


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (full disk, no permission); the previous file of that name is kept."""


def mark_resume_point(exception: BaseException, path: str | None, why_not: str = "") -> None:
    """Record on ``exception`` (on its way to the CLI's ``main``) the checkpoint a stopped run resumes from.

    ``path`` must exist on disk when this is called; ``None`` with ``why_not`` when there is none. The exception
    object is the one channel from a callback's ``on_exception`` to ``main``: Lightning re-raises it unchanged
    (KeyboardInterrupt as the context of its ``SystemExit(1)``).
    """
    exception.aigc_resume_from = path  # type: ignore[attr-defined]
    exception.aigc_not_saved = why_not  # type: ignore[attr-defined]


def resume_hint(exception: BaseException) -> str | None:
    """``"resume with --ckpt_path PATH"`` (or why there is nothing to resume from) when a checkpoint callback
    marked ``exception`` or its context; ``None`` when none did (the run never got to training)."""
    for e in (exception, exception.__context__, exception.__cause__):
        if e is not None and hasattr(e, "aigc_resume_from"):
            path, why_not = e.aigc_resume_from, e.aigc_not_saved
            if path is None:
                return f"no checkpoint to resume from ({why_not})"
            older = f" (an earlier state; {why_not})" if why_not else ""
            return f"resume with --ckpt_path {path}{older}"
    return None


def check_finite(loss: Tensor, name: str, batch: int) -> None:
    """Raise ``NonFiniteLossError`` naming ``name`` and ``batch`` when ``loss`` has a NaN/inf.

    Call it before ``manual_backward`` / the optimizer step: the weights are then still the last finite ones, and
    ``AtomicCheckpoint`` saves them to ``last.ckpt`` as the run stops (the CLI's message names that file).
    """
    if not bool(torch.isfinite(loss.detach()).all()):
        value = loss.detach().float().flatten()[~torch.isfinite(loss.detach().float().flatten())][0].item()
        raise NonFiniteLossError(
            f"{name} became {value} at batch {batch}; training stopped before that update. Lower the learning "
            "rate or prefer bf16-mixed over 16-mixed"
        )


def checked_optimizer(factory: Callable[[Iterable], Optimizer], params: Iterable, option: str) -> Optimizer:
    """``factory(params)``, with a non-positive learning rate refused in one message naming ``option``.

    The optimizer's own signature (``torch.optim.Adam(lr=…)``) cannot carry a constrained type, so the check runs
    when the optimizer is built (the start of ``fit``), not at parse time; torch itself accepts ``lr=0``.
    """
    try:
        optimizer = factory(params)
    except ValueError as e:  # torch's "Invalid learning rate: -1"
        raise UserError(f"--{option}: {e}; pass values in range (a learning rate > 0)") from e
    for group in optimizer.param_groups:
        lr = group.get("lr")
        if lr is not None and not float(lr) > 0:
            raise UserError(f"--{option}.init_args.lr {float(lr)} is out of range; pass a learning rate > 0")
    return optimizer
