"""Reading the torch files a user names (weights, latents, directions, classifier checkpoints): tensors and plain
values only, never code.

``torch.load(weights_only=False)`` runs whatever a pickle asks for, so a downloaded ``.pt`` could run code on the
user's machine. Every file a user names is loaded here with ``weights_only=True``; a file that holds other objects is
refused with one line that says so and how to convert a file the user trusts.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from aigc_lightning.errors import UserError

UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
CONVERT = (
    "if you trust it, convert it once in Python: d = torch.load(PATH, weights_only=False), then torch.save of "
    "its tensors and plain values only (e.g. d['state_dict'])"
)


def is_refused(error: BaseException) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused the file for the objects it holds (not for bad bytes)."""
    return UNSUPPORTED_GLOBAL.search(str(error)) is not None or "Unsupported class" in str(error)


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def refused_message(path: str | Path, option: str, error: BaseException) -> str:
    """One line for a file ``torch.load(weights_only=True)`` refused: what it holds, and how to convert it."""
    match = UNSUPPORTED_GLOBAL.search(str(error))
    what = f" ({match.group(1)})" if match else ""
    return f"{option} {path} holds pickled Python objects{what}, which can run code, so it was not loaded; {CONVERT}"


def load_tensors(path: str | Path, option: str, expected: str, safe_globals: Iterable[Any] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; ``UserError`` naming ``option`` and ``expected`` for a
    missing, unreadable or code-carrying file. ``safe_globals``: classes a known format needs besides tensors
    (rosinality's ``argparse.Namespace``)."""
    p = Path(path).expanduser()
    if "://" in str(path):
        raise UserError(f"{option} {path} is a URL; download the file first and pass its local path")
    if not p.is_file():
        raise UserError(f"{option} {p} does not exist; pass {expected}")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if is_refused(e):
            raise UserError(refused_message(p, option, e)) from e
        raise UserError(f"cannot read {option} {p} (not a torch file: {first_line(e)}); pass {expected}") from e
    except Exception as e:  # truncated, not a torch file, another format: all mean "not the expected file"
        raise UserError(f"cannot read {option} {p} ({type(e).__name__}: {first_line(e)}); pass {expected}") from e


__all__ = ["is_refused", "load_tensors", "refused_message"]
