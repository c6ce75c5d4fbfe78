"""The exceptions the CLI turns into a one-line message instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer


class UserError(RuntimeError):
    """Bad input the user can fix: the message names the cause and the fix."""


class NonFiniteLossError(UserError):
    """A loss became NaN or infinite; raised before the update, so saved checkpoints keep finite weights."""


def check_finite(loss: Tensor, name: str, batch: int) -> None:
    """Raise ``NonFiniteLossError`` naming ``name`` and ``batch`` when ``loss`` has a NaN/inf.

    Call it before ``manual_backward`` / the optimizer step: the weights (and ``last.ckpt``) are then still the
    last finite ones.
    """
    if not bool(torch.isfinite(loss.detach()).all()):
        value = loss.detach().float().flatten()[~torch.isfinite(loss.detach().float().flatten())][0].item()
        raise NonFiniteLossError(
            f"{name} became {value} at batch {batch}; training stopped before that update, so checkpoints keep "
            "the last finite weights. Lower the learning rate, prefer bf16-mixed over 16-mixed, or resume from "
            "checkpoints/last.ckpt with a smaller step size."
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
