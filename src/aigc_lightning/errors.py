"""The exceptions the CLI turns into a one-line message instead of a traceback."""

from __future__ import annotations

import torch
from torch import Tensor


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
