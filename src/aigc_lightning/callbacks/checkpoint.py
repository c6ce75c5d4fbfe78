"""Crash-safe checkpoints: atomic writes, no non-finite weights, ``last.ckpt`` every N training batches.

``ModelCheckpoint`` writes in place (a kill during the write leaves a truncated ``last.ckpt``) and counts
``every_n_train_steps`` in *optimizer* steps (two per GAN batch, one per LBFGS call). Here:

- ``AtomicCheckpointIO``, a ``CheckpointIO`` plugin (Lightning's extension point for how checkpoints are written),
  writes every checkpoint to a hidden temporary file in the same folder, flushes it to disk and renames it over
  the target with ``os.replace`` (atomic on POSIX and Windows); during ``fit`` it does so on a background thread
  (the checkpoint's tensors are copied first, so training goes on while the file is serialised and fsynced);
- ``AtomicCheckpoint`` installs that plugin, refuses to build a checkpoint of non-finite weights (decided by all
  ranks together) and with ``every_n_batches=N`` also refreshes ``last.ckpt`` every N training *batches*, so a
  SIGKILL loses at most N batches; at the end of training it brings ``last.ckpt`` up to the final weights when
  the last scheduled save came earlier (validation every few epochs).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse.typing import NonNegativeInt
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.apply_func import apply_to_collection
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from aigc_lightning import compat
from aigc_lightning.errors import NonFiniteLossError, UserError

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
        every_n_batches: NonNegativeInt | None = None,
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
        self._periodic_step = -1  # global_step of the latest every_n_batches save of last.ckpt

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # only Lightning's default writer is replaced: a user's own plugin or a sharded strategy's is kept
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO) and stage == "fit":
            # writes leave the training loop only while fitting; Strategy.teardown waits for them and switches
            # back, so a trainer.save_checkpoint after fit has its file on disk when it returns
            trainer.strategy.checkpoint_io.background = True

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if (
            self.every_n_batches < 1
            or not self.save_last
            or compat.batches_processed(trainer) % self.every_n_batches != 0
            or trainer.fast_dev_run
            or trainer.sanity_checking
        ):
            return
        # An epoch's last batch is saved too: the end-of-epoch save may not come (it waits for validation, e.g.
        # every 5th epoch with check_val_every_n_epoch: 5).
        compat.save_last_now(self, trainer)
        self._periodic_step = trainer.global_step

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        # With check_val_every_n_epoch > 1 the epoch-end saves come with validation only, so a run whose last
        # epoch has none (max_epochs not a multiple of it, or max_steps) would end with an older last.ckpt.
        stale = trainer.global_step not in (compat.last_saved_step(self), self._periodic_step)
        if self.save_last and stale and not trainer.fast_dev_run and trainer.global_step > 0:
            compat.save_last_now(self, trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # Every rank builds the checkpoint (saving is collective) before rank 0 writes it: deciding here, together,
        # means no rank is left waiting in the save when the weights went bad on another one.
        if not trainer.strategy.reduce_boolean_decision(all_finite(pl_module), all=True):
            raise NonFiniteLossError(
                f"the weights became NaN/inf by batch {compat.batches_processed(trainer)}; the checkpoint was not "
                "written, so the checkpoints on disk keep the last finite weights. Lower the learning rate or "
                "resume from checkpoints/last.ckpt."
            )

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, NonFiniteLossError):
            return  # the checkpoints on disk already hold the last finite weights
        super().on_exception(trainer, pl_module, exception)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes to a hidden temporary file, fsyncs it and renames it over the target, so a
    checkpoint on disk is always either the old or the new file, never a truncated one. Remote paths (``s3://`` …)
    are written by the parent as they are (object stores replace whole objects anyway).

    With ``background=True`` (``AtomicCheckpoint`` sets it during ``fit``) a save copies the checkpoint's tensors
    and returns; one writer thread serialises, fsyncs and renames, in call order, and removals of old top-k files
    queue behind the writes. The fsync alone is ~10 ms on a quiet disk and far more on a busy one, per file, twice
    an epoch. ``teardown`` (end of fit) waits for the queue; an error in the thread is raised by the next save,
    removal or the teardown.

    Args:
        background: write on a background thread (see above).
    """

    def __init__(self, background: bool = False) -> None:
        super().__init__()
        self.background = background
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if not self.background:
            self._write(checkpoint, path, storage_options)
            return
        # the loop keeps updating the weights in place: the thread must write the state of this moment
        snapshot = apply_to_collection(checkpoint, torch.Tensor, lambda t: t.detach().clone())
        self._submit(self._write, snapshot, path, storage_options)

    def remove_checkpoint(self, path: Any) -> None:
        if self.background:
            self._submit(super().remove_checkpoint, path)  # after the queued writes (one of them may be this file)
        else:
            super().remove_checkpoint(path)

    def teardown(self) -> None:
        self.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.background = False
        super().teardown()

    def wait(self) -> None:
        """Block until every queued write and removal is done; raise the first error one of them hit."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _submit(self, fn: Any, *args: Any) -> None:
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in done:
            future.result()  # a failed earlier write surfaces here, at the next checkpoint
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending.append(self._executor.submit(fn, *args))

    def _write(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None) -> None:
        if not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")  # hidden, and not *.ckpt: never mistaken for a checkpoint
        super().save_checkpoint(checkpoint, tmp, storage_options)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the bytes reach the disk before the rename makes them the checkpoint
        os.replace(tmp, path)


__all__ = ["AtomicCheckpoint", "AtomicCheckpointIO", "all_finite", "check_checkpoint_file"]
