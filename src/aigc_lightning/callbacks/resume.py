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
- **Atomic and periodic ``last.ckpt``.** ``ModelCheckpoint`` writes the file in place (a kill during the write
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

import os
import random
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn

from aigc_lightning.errors import NonFiniteLossError, UserError

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


# ----------------------------------------------------------------------------------------------------------
# Checkpoints

LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")  # ``--ckpt_path`` values Lightning resolves itself


def check_checkpoint_file(path: str | Path) -> None:
    """Raise ``UserError`` unless ``path`` is a readable Lightning checkpoint (checked before Lightning opens it).

    Lightning's own errors for these cases are a ``KeyError(101)`` for a text file, ``OSError(22)`` for a
    truncated one and ``KeyError('pytorch-lightning_version')`` for a plain ``torch.save`` — none names the file.
    """
    if str(path) in LIGHTNING_CKPT_NAMES or str(path).startswith("registry:") or not _is_local(path):
        return
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


def _is_local(path: str | Path) -> bool:
    return "://" not in str(path)


def all_finite(module: torch.nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``module`` is finite."""
    tensors = list(module.parameters()) + list(module.buffers())
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point() or t.is_complex())


class AtomicCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that writes atomically, never saves non-finite weights, and refreshes ``last.ckpt``
    every ``every_n_batches`` training batches.

    Every other argument is ``ModelCheckpoint``'s; the CLI exposes them as ``--checkpoint.*``.

    Args:
        dirpath: folder of the checkpoints (default: ``<log dir>/checkpoints``).
        filename: name pattern of the top-k checkpoints, e.g. ``"{epoch}-{step}"``.
        monitor: logged metric that ranks the top-k checkpoints (``None``: the latest is kept).
        verbose: print a line per save.
        save_last: also keep ``last.ckpt`` (the resume point; ``"link"`` makes it a symlink).
        save_top_k: how many ranked checkpoints to keep (-1: all, 0: none).
        save_on_exception: also save when training raises (not on a non-finite loss: weights stay the last
            finite ones either way).
        save_weights_only: leave optimizer and loop states out (such a file cannot resume training).
        mode: ``"min"`` or ``"max"`` of ``monitor``.
        auto_insert_metric_name: write ``epoch=3`` instead of ``3`` into file names.
        every_n_train_steps: save top-k every N *optimizer* steps (a GAN makes two per batch; prefer
            ``every_n_batches`` for crash safety).
        train_time_interval: save top-k at this wall-time interval.
        every_n_epochs: save top-k every N epochs.
        save_on_train_epoch_end: save at the end of the training epoch instead of after validation.
        enable_version_counter: add ``-v1`` … instead of overwriting an existing file of the same name.
        every_n_batches: also overwrite ``last.ckpt`` every N training batches (counted over the whole run,
            whatever the number of optimizer steps per batch); a kill then loses at most N batches. ``None`` or
            0: only the end-of-epoch saves.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool | Literal["link"] | None = None,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
        every_n_batches: int | None = None,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            verbose=verbose,
            save_last=save_last,
            save_top_k=save_top_k,
            save_on_exception=save_on_exception,
            save_weights_only=save_weights_only,
            mode=mode,
            auto_insert_metric_name=auto_insert_metric_name,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            every_n_epochs=every_n_epochs,
            save_on_train_epoch_end=save_on_train_epoch_end,
            enable_version_counter=enable_version_counter,
        )
        self.every_n_batches = every_n_batches or 0

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # training batches of the whole run, a resumed run's included
        batches = trainer.fit_loop.epoch_loop.batch_progress.total.processed
        if (
            self.every_n_batches < 1
            or not self.save_last
            or batches % self.every_n_batches != 0
            or trainer.fast_dev_run
            or trainer.sanity_checking
        ):
            return
        # An epoch's last batch is saved too: the end-of-epoch save may not come (it waits for validation, e.g.
        # every 5th epoch with check_val_every_n_epoch: 5). ModelCheckpoint skips a save when
        # ``_last_global_step_saved`` equals the current step, so the marker is put back afterwards: the
        # end-of-epoch save, when it comes, still overwrites last.ckpt as the exact-resume point.
        marker = self._last_global_step_saved
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_global_step_saved = marker

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, NonFiniteLossError):
            return  # the checkpoints on disk already hold the last finite weights
        super().on_exception(trainer, pl_module, exception)

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        # Overrides ModelCheckpoint's (private) writer: the one place every top-k and last save goes through.
        # decided together: a rank that stopped alone would leave the others waiting in the collective save
        if not trainer.strategy.reduce_boolean_decision(all_finite(trainer.lightning_module), all=True):
            step = trainer.fit_loop.epoch_loop.batch_progress.total.processed
            raise NonFiniteLossError(
                f"the weights became NaN/inf by batch {step}; {filepath} was not written, so the checkpoints on "
                "disk keep the last finite weights. Lower the learning rate or resume from checkpoints/last.ckpt."
            )
        if not _is_local(filepath):
            super()._save_checkpoint(trainer, filepath)
            return
        path = Path(filepath)
        tmp = path.with_name(f".{path.name}.tmp")  # hidden, and not *.ckpt: never mistaken for a checkpoint
        trainer.save_checkpoint(tmp, self.save_weights_only)  # collective; rank 0 writes
        if trainer.is_global_zero and tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())  # the bytes reach the disk before the rename makes them the checkpoint
            os.replace(tmp, path)
        elif trainer.is_global_zero and tmp.is_dir():
            # Sharded strategies (FSDP, DeepSpeed) write a folder; a folder cannot replace a folder atomically,
            # so the old one is removed first (the window is the rename alone).
            import shutil

            if path.is_dir():
                shutil.rmtree(path)
            os.replace(tmp, path)
        trainer.strategy.barrier("atomic_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)
