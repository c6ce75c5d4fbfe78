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
  *batches*, so a SIGKILL loses at most N batches.

Resuming from a mid-epoch ``last.ckpt`` continues the run to the end (epochs, step counters, schedules and
weights are restored) but is not bit-exact: Lightning restarts the epoch's data iterator (the project's loaders
are not stateful), so the rest of that epoch sees a new shuffle.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn

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
