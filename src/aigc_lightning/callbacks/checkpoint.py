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
  the last scheduled save came earlier (validation every few epochs);
- when a run stops early (a NaN/inf loss, an exception, SIGTERM, Ctrl-C) ``AtomicCheckpoint.on_exception`` writes
  ``last.ckpt`` of that moment once, waits until it is on disk, and records the file on the exception, from which
  the CLI's ``main`` prints the one line naming it (see ``on_exception`` for what is added to Lightning by hand).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from jsonargparse.typing import NonNegativeInt
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.apply_func import apply_to_collection
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from aigc_lightning import compat
from aigc_lightning.callbacks.resume import check_checkpoint_file, is_local  # check_…: callers import it here
from aigc_lightning.errors import CheckpointWriteError, NonFiniteLossError, mark_resume_point


def remove_stale_temp_files(folder: str | Path | None) -> None:
    """Delete ``.*.ckpt.tmp`` files that a killed write (SIGKILL, power loss) left in ``folder``."""
    if folder is None or not is_local(folder) or not Path(folder).is_dir():
        return
    for tmp in Path(folder).glob(".*.ckpt.tmp"):
        tmp.unlink(missing_ok=True)


def all_finite(module: torch.nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``module`` is finite."""
    tensors = list(module.parameters()) + list(module.buffers())
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point() or t.is_complex())


class AtomicCheckpoint(compat.LastCheckpointSearch):
    """``ModelCheckpoint`` that writes atomically, never saves non-finite weights, refreshes ``last.ckpt`` every
    ``every_n_batches`` training batches, and saves ``last.ckpt`` once when a run stops early (NaN loss, exception,
    SIGTERM, Ctrl-C). ``--ckpt_path last`` resumes the newest run's ``last.ckpt`` (Lightning looks only in the new
    run's own folder).

    Every other argument is ``ModelCheckpoint``'s, passed on as it is (the CLI shows them as ``--checkpoint.*``, with
    ModelCheckpoint's own help: jsonargparse follows ``**kwargs`` into its signature).

    Args:
        dirpath: folder of the checkpoints (default: ``<log dir>/checkpoints``).
        every_n_batches: also overwrite ``last.ckpt`` every N training batches (counted over the whole run,
            whatever the number of optimizer steps per batch); a kill then loses at most N batches. ``None`` or
            0: only the end-of-epoch saves. (ModelCheckpoint's ``every_n_train_steps`` counts optimizer steps:
            two per GAN batch.)
        **kwargs: ``ModelCheckpoint``'s other arguments (``save_last``, ``monitor``, ``save_top_k``, …).
    """

    def __init__(
        self, dirpath: str | None = None, every_n_batches: NonNegativeInt | None = None, **kwargs: Any
    ) -> None:
        super().__init__(dirpath=dirpath, **kwargs)
        self.every_n_batches = every_n_batches or 0
        self._periodic_step = -1  # global_step of the latest every_n_batches save of last.ckpt
        self._sigint_before: Any = None  # the SIGINT handler replaced during fit (see on_train_start)
        self._interrupts = 0  # Ctrl-Cs received during fit
        self._buffers_at_batch_start: list[torch.Tensor] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # only Lightning's default writer is replaced: a user's own plugin or a sharded strategy's is kept
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO) and stage == "fit":
            # writes leave the training loop only while fitting; Strategy.teardown waits for them and switches
            # back, so a trainer.save_checkpoint after fit has its file on disk when it returns
            trainer.strategy.checkpoint_io.background = True
        if stage == "fit" and trainer.is_global_zero:
            resumed = trainer.ckpt_path if trainer.ckpt_path and is_local(trainer.ckpt_path) else None
            for folder in {self.dirpath, str(Path(resumed).parent) if resumed else None}:
                remove_stale_temp_files(folder)

    def earlier_last_checkpoints(self, trainer: Trainer) -> set[str]:
        """``<save_dir>/<name>/*/checkpoints/last*.ckpt`` (ModelCheckpoint's folder under a logger) of every run."""
        if self.dirpath is not None or not trainer.loggers:
            return set()  # a fixed folder: Lightning's own search covers it
        root = Path(trainer.loggers[0].save_dir or trainer.default_root_dir) / str(trainer.loggers[0].name)
        return (
            {os.path.normpath(p) for p in root.glob("*/checkpoints/last*.ckpt")} if is_local(root) else set()
        )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        # By hand: Lightning turns SIGTERM into a stop at the end of the batch (its signal connector's
        # received_sigterm), but a Ctrl-C raises KeyboardInterrupt wherever it lands, e.g. between the two
        # optimizer steps of a GAN batch or inside one. The first SIGINT here only asks for the same batch-end stop;
        # a second one stops at once. Lightning's signal connector puts the handler it found back at teardown.
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._interrupts = 0
            self._sigint_before = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            raise KeyboardInterrupt
        sys.stderr.write(
            "\nCtrl-C: stopping after this batch and saving last.ckpt (Ctrl-C again: stop now)\n"
        )

    def _stop_if_interrupted(self) -> None:
        if self._interrupts:
            raise KeyboardInterrupt  # at a batch end: Lightning's KeyboardInterrupt path calls on_exception

    def _restore_sigint(self, handler: Any = None) -> None:
        """Put back the SIGINT handler of before fit, or install ``handler`` until then."""
        if self._sigint_before is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler or self._sigint_before)
        if handler is None:
            self._sigint_before = None

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._restore_sigint()
        super().teardown(trainer, pl_module, stage)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx) -> None:
        # By hand: a train-mode forward updates BatchNorm's running statistics before the loss can be checked, so a
        # NaN batch has already written NaN into them while the parameters are still good. The float buffers of the
        # batch start (kilobytes, one fused copy) let the failure save put back the ones that became NaN/inf.
        buffers = [b for b in pl_module.buffers() if b.is_floating_point()]
        if [a.shape for a in self._buffers_at_batch_start] != [b.shape for b in buffers]:
            self._buffers_at_batch_start = [b.detach().clone() for b in buffers]
        elif buffers:
            torch._foreach_copy_(self._buffers_at_batch_start, buffers)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if (
            self.every_n_batches >= 1
            and self.save_last
            and compat.batches_processed(trainer) % self.every_n_batches == 0
            and not trainer.fast_dev_run
            and not trainer.sanity_checking
        ):
            # An epoch's last batch is saved too: the end-of-epoch save may not come (it waits for validation,
            # e.g. every 5th epoch with check_val_every_n_epoch: 5).
            compat.save_last_now(self, trainer)
            self._periodic_step = trainer.global_step
        self._stop_if_interrupted()  # the state here is one Lightning resumes from (its own batch-end saves)

    def on_validation_batch_end(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if not trainer.sanity_checking:
            self._stop_if_interrupted()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        # With check_val_every_n_epoch > 1 the epoch-end saves come with validation only, so a run whose last
        # epoch has none (max_epochs not a multiple of it, or max_steps) would end with an older last.ckpt.
        stale = trainer.global_step not in (compat.last_saved_step(self), self._periodic_step)
        if self.save_last and stale and not trainer.fast_dev_run and trainer.global_step > 0:
            compat.save_last_now(self, trainer)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Every rank builds the checkpoint (saving is collective) before rank 0 writes it: deciding here, together,
        # means no rank is left waiting in the save when the weights went bad on another one.
        if not trainer.strategy.reduce_boolean_decision(all_finite(pl_module), all=True):
            raise NonFiniteLossError(
                f"the weights became NaN/inf by batch {compat.batches_processed(trainer)} (no NaN loss stopped it "
                "first); that checkpoint was not written. Lower the learning rate"
            )

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Save ``last.ckpt`` of this moment once, flushed to disk, and record the file to resume from on
        ``exception`` (``errors.mark_resume_point``) for the CLI's one line.

        What Lightning gives: ``on_exception`` on every stop (its ``SIGTERMException`` at a batch end for SIGTERM,
        also under SLURM's auto-requeue, whose SIGUSR1 ``hpc_ckpt`` save is left alone), and ModelCheckpoint's
        ``save_on_exception``. Added by hand: the save goes to ``last.ckpt`` (the file users resume from, not a
        new top-k name), never of NaN/inf weights, not twice when the periodic save already holds this step, with
        the background writer flushed before the process exits (its thread would otherwise die with it), and
        never raising (an error here would replace the exception that stopped the run).
        """
        if trainer.state.fn != TrainerFn.FITTING:
            return  # validate/test/predict change no weights: their errors name no checkpoint
        self._restore_sigint(
            signal.SIG_IGN
        )  # a further Ctrl-C must not cut the save short (as Lightning does)
        try:
            if self.save_on_exception and self._should_save_on_exception(trainer) and all_finite(pl_module):
                super().on_exception(trainer, pl_module, exception)  # the top-k style file the user asked for
        except Exception:  # noqa: BLE001,S110 -- the last.ckpt save below meets the same error and reports it
            pass
        try:
            mark_resume_point(exception, *self._save_on_failure(trainer, pl_module, exception))
        finally:
            self._restore_sigint()

    def _save_on_failure(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> tuple[str | None, str]:
        """(existing file to resume from or None, why no new file was written)."""
        io = trainer.strategy.checkpoint_io
        flushed = _flush(io)  # queued periodic writes first: they may already hold this very step
        if trainer.sanity_checking or trainer.fast_dev_run:
            return self._existing(trainer), "training had not started"
        if not self.save_last:
            return self._existing(trainer), "--checkpoint.save_last is off"
        if trainer.global_step == 0:
            return self._existing(trainer), "no optimizer step had been taken yet"
        if trainer.world_size > 1 and not isinstance(exception, SIGTERMException):
            # a save is collective; after an error on one rank the others may be inside another collective
            return self._existing(trainer), "with several processes only a SIGTERM stop is saved"
        current = trainer.global_step in (self._periodic_step, compat.last_saved_step(self))
        if current and flushed is None and self.last_model_path and Path(self.last_model_path).is_file():
            return self._existing(trainer), ""
        if isinstance(exception, NonFiniteLossError):
            self._restore_broken_buffers(pl_module)
        if not all_finite(pl_module):
            return self._existing(trainer), "the weights are NaN/inf"
        background = getattr(io, "background", False)
        try:
            if isinstance(io, AtomicCheckpointIO):
                io.background = False  # written and on disk when save_last_now returns
            compat.save_last_now(self, trainer)
        except CheckpointWriteError:
            return self._existing(trainer), "writing a newer one failed too"
        except Exception as e:  # noqa: BLE001 -- reported in the one line, never replacing the run's own error
            return self._existing(trainer), f"saving it failed: {(str(e).splitlines() or [repr(e)])[0]}"
        finally:
            if isinstance(io, AtomicCheckpointIO):
                io.background = background
        return self._existing(trainer), ""

    @torch.no_grad()
    def _restore_broken_buffers(self, pl_module: LightningModule) -> None:
        """Put back the batch-start value of every floating-point buffer that the failed batch made NaN/inf."""
        buffers = [b for b in pl_module.buffers() if b.is_floating_point()]
        if len(buffers) != len(self._buffers_at_batch_start):
            return
        for buffer, saved in zip(buffers, self._buffers_at_batch_start):
            if buffer.shape == saved.shape and not bool(torch.isfinite(buffer).all()):
                buffer.copy_(saved)

    def _existing(self, trainer: Trainer) -> str | None:
        """This run's ``last.ckpt`` if it is on disk, else the checkpoint the run resumed from, else None."""
        for path in (self.last_model_path, trainer.ckpt_path):
            if path and is_local(path) and Path(path).is_file():
                return os.path.abspath(path)  # valid from any folder the user runs the next command in
        return None


def _flush(io: Any) -> Exception | None:
    """Wait for an ``AtomicCheckpointIO``'s queued writes; the first error instead of raising it."""
    if not isinstance(io, AtomicCheckpointIO):
        return None
    try:
        io.wait()
    except Exception as e:  # noqa: BLE001 -- the caller decides (an older file, or a new save)
        return e
    return None


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

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if not self.background:
            self._write(checkpoint, path, storage_options)
            return
        # the loop keeps updating the weights in place: the thread must write the state of this moment
        snapshot = apply_to_collection(checkpoint, torch.Tensor, lambda t: t.detach().clone())
        self._submit(self._write, snapshot, path, storage_options)

    def remove_checkpoint(self, path: Any) -> None:
        if self.background:
            self._submit(
                super().remove_checkpoint, path
            )  # after the queued writes (one of them may be this file)
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
        errors = [future.exception() for future in pending]  # waits for each, also those after a failed one
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def _submit(self, fn: Any, *args: Any) -> None:
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in done:
            future.result()  # a failed earlier write surfaces here, at the next checkpoint
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending.append(self._executor.submit(fn, *args))

    def _write(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None) -> None:
        if not is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")  # hidden, and not *.ckpt: never mistaken for a checkpoint
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())  # the bytes reach the disk before the rename makes them the checkpoint
            os.replace(tmp, path)
        except BaseException as e:
            tmp.unlink(missing_ok=True)  # a full disk, an error or Ctrl-C: no partial file stays behind
            if isinstance(e, OSError):
                kept = f"the previous {path.name} is kept" if path.exists() else "nothing was written"
                raise CheckpointWriteError(f"could not write {path} ({e.strerror or e}); {kept}") from e
            raise


__all__ = [
    "AtomicCheckpoint",
    "AtomicCheckpointIO",
    "all_finite",
    "check_checkpoint_file",
    "remove_stale_temp_files",
]
