"""Exact resume and crash-safe checkpoints: RNG states in the checkpoint, atomic periodic ``last.ckpt``.

Lightning already stores weights, optimizer and LR-scheduler states, loop counters, the AMP ``GradScaler`` (the
precision plugin's state) and whatever a module or callback keeps in buffers / ``state_dict``. Two things it does
not do, written here by hand:

- **RNG states.** Lightning saves no random-number-generator state, so a resumed run shuffles, drops out and
  draws noise differently from the uninterrupted one. ``RNGState`` saves torch (CPU and CUDA), numpy and python
  states, one set per rank, and restores them before the first batch of the resumed run. With it, resuming from
  an end-of-epoch ``last.ckpt`` reproduces the uninterrupted run bit for bit on CPU (``tests/test_resume.py``).
  Condition (met by the project's modules): hooks that run between two epochs (``on_train_epoch_end`` /
  ``on_train_epoch_start``) do not draw from the global RNGs — sample images for TensorBoard with
  ``randn_from_seeds`` or a fixed noise buffer. Lightning creates the resumed run's data iterator before
  ``on_train_epoch_start`` but the uninterrupted run's after it, so a draw there would reorder the draws.
- **Atomic and periodic ``last.ckpt``** (``callbacks/checkpoint.py``). ``ModelCheckpoint`` writes the file in place (a kill during the write
  leaves a truncated ``last.ckpt``) and counts ``every_n_train_steps`` in *optimizer* steps (two per GAN batch,
  one per LBFGS call). ``AtomicCheckpoint`` writes every checkpoint to a hidden temporary file in the same folder,
  flushes it to disk and renames it over the target with ``os.replace`` (atomic on POSIX and Windows), refuses to
  write non-finite weights, and with ``every_n_batches=N`` also refreshes ``last.ckpt`` every N training
  *batches*, so a SIGKILL loses at most N batches; a run stopped by a NaN loss, an exception, SIGTERM or
  Ctrl-C writes ``last.ckpt`` of that moment and names it in its last line.

``check_checkpoint_file`` checks a ``--ckpt_path`` before Lightning opens it, with one line naming the file; URLs
are refused (Lightning unpickles remote files with ``weights_only=False``).

Resuming from a mid-epoch ``last.ckpt`` continues the run to the end (epochs, step counters, schedules and
weights are restored) but is not bit-exact: Lightning restarts the epoch's data iterator (the project's loaders
are not stateful), so the rest of that epoch sees a new shuffle.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn

from aigc_lightning.errors import UserError

# ----------------------------------------------------------------------------------------------------------
# The file to resume from

LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")  # ``--ckpt_path`` values Lightning resolves itself


def check_checkpoint_file(path: str | Path) -> None:
    """Raise ``UserError`` unless ``path`` is a readable Lightning checkpoint (checked before Lightning opens it).

    Lightning's own errors for these cases are a ``KeyError(101)`` for a text file, ``OSError(22)`` for a
    truncated one and ``KeyError('pytorch-lightning_version')`` for a plain ``torch.save`` — none names the file.
    """
    if str(path) in LIGHTNING_CKPT_NAMES or str(path).startswith("registry:"):
        return
    if str(path).startswith("file://"):
        raise UserError(f"--ckpt_path {path} is a URL; pass the local path instead: --ckpt_path {local_path(path)}")
    if not is_local(path):
        # Lightning loads a remote checkpoint with torch.load(weights_only=False): the file's pickle would run
        raise UserError(
            f"--ckpt_path {path} is a remote URL, which is not loaded (unpickling a remote file can run code from "
            "it); download it yourself and pass the local path of the .ckpt"
        )
    path = Path(path).expanduser()
    where = "runs keep it at lightning_logs/version_N/checkpoints/last.ckpt"
    if not path.exists():
        raise UserError(f"--ckpt_path {path} does not exist; pass the path of a .ckpt file ({where})")
    if path.is_dir():
        raise UserError(f"--ckpt_path {path} is a folder; pass the .ckpt file inside it ({where})")
    try:
        # mmap: only the header is read, the tensors stay on disk (Lightning loads the file again itself)
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise UserError(
            f"--ckpt_path {path} is not a readable checkpoint (truncated, corrupt or not a torch file: "
            f"{type(e).__name__}: {(str(e).splitlines() or [repr(e)])[0]}); pass another .ckpt ({where})"
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "pytorch-lightning_version" not in ckpt:
        raise UserError(
            f"--ckpt_path {path} is a torch file but not a Lightning checkpoint (no 'state_dict' / "
            f"'pytorch-lightning_version'); pass a .ckpt written by a training run ({where})"
        )


def is_local(path: str | Path) -> bool:
    """Whether ``path`` is a local path, not a URL (``s3://``, ``https://``, ``file://``)."""
    return "://" not in str(path)


def local_path(url: str) -> str:
    """``file:///a/b%20c.ckpt`` → ``/a/b c.ckpt``."""
    parsed = urlparse(url)
    host = parsed.netloc if parsed.netloc not in ("", "localhost") else ""
    return unquote(f"//{host}{parsed.path}" if host else parsed.path)


# ----------------------------------------------------------------------------------------------------------
# RNG states


def collect_rng_states() -> dict[str, Any]:
    """This process's RNG states: torch CPU, every CUDA device (when CUDA is initialised), numpy, python.

    Lightning has the same in ``lightning.fabric.utilities.seed._collect_rng_states``, but it is private API.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # plain types and tensors only: Lightning's CLI and ``torch.load(weights_only=True)`` refuse numpy arrays
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``collect_rng_states`` returned (CUDA only when the device count matches)."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    random.setstate(states["python"])
    cuda = states.get("torch.cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class RNGState(Callback):
    """Saves every rank's RNG states (torch CPU/CUDA, numpy, python) in the checkpoint and restores them on resume.

    The CLI always adds it. Under DDP the states of all ranks are gathered into the checkpoint (each rank draws its
    own dropout / noise); a run resumed on the same number of processes gets each rank's own states back, a run
    resumed on a different number gets rank ``r % saved_ranks``'s and a warning (it continues, not bit-exact).
    """

    def state_dict(self) -> dict[str, Any]:
        states = collect_rng_states()
        if dist.is_available() and dist.is_initialized():
            # Lightning builds the checkpoint on every rank (``trainer.save_checkpoint`` is collective) and writes
            # rank 0's: gather so rank 0's copy holds all of them.
            every_rank: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(every_rank, states)
            return {"ranks": every_rank}
        return {"ranks": [states]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict["ranks"]
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if len(ranks) != world:
            rank_zero_warn(
                f"the checkpoint holds RNG states of {len(ranks)} process(es), this run has {world}: training "
                "continues, but not bit for bit like the original run"
            )
        set_rng_states(ranks[rank % len(ranks)])
