"""Faults: a SIGKILLed run resumes from its periodic ``last.ckpt``; a kill during a checkpoint write leaves the
previous ``last.ckpt`` intact; a NaN loss or NaN weights stop training and keep the last finite checkpoint."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import Callback

from aigc_lightning import compat
from aigc_lightning.cli import main
from conftest import ROOT, child_env
from reliability_toy import toy_fit_args


class NaNInBatch(Callback):
    """Fills the images of training batch ``at_batch`` (counted from 0 over the run) with NaN: a corrupt input
    makes the loss NaN while the weights are still finite (a huge learning rate ruins the weights first).

    Args:
        at_batch: the batch whose images become NaN.
    """

    def __init__(self, at_batch: int = 3) -> None:
        self.at_batch = at_batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if compat.batches_processed(trainer) == self.at_batch:
            batch[0].fill_(float("nan"))


def env() -> dict[str, str]:
    return child_env()


def finite(state_dict: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state_dict.values() if v.is_floating_point())


# A training run whose second checkpoint write dies half-way (SIGKILL after writing half of the bytes).
DYING_WRITE = textwrap.dedent(
    """
    import io, os, signal, sys
    import torch
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint
    from aigc_lightning.callbacks.checkpoint import AtomicCheckpoint
    from aigc_lightning.datamodules import DigitsDataModule
    from reliability_toy import ToyModule

    real_save, calls = TorchCheckpointIO.save_checkpoint, []

    def dying_save(self, checkpoint, path, storage_options=None):
        calls.append(path)
        if len(calls) < 2:
            return real_save(self, checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with open(path, "wb") as f:
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    TorchCheckpointIO.save_checkpoint = dying_save
    if sys.argv[2] == "atomic":
        checkpoint = AtomicCheckpoint(sys.argv[1], save_last=True, save_top_k=0, every_n_batches=1)
    else:  # Lightning's own: every batch is two optimizer steps
        checkpoint = ModelCheckpoint(sys.argv[1], save_last=True, save_top_k=0, every_n_train_steps=2)
    trainer = Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=4, limit_val_batches=0, logger=False,
                      callbacks=[checkpoint], enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(ToyModule(image_size=8), DigitsDataModule(image_size=8, batch_size=16))
    """
)


@pytest.mark.parametrize("kind", ["atomic", pytest.param("plain", marks=pytest.mark.slow)])
def test_kill_during_checkpoint_write(tmp_path, kind):
    proc = subprocess.run(
        [sys.executable, "-c", DYING_WRITE, str(tmp_path), kind],
        check=False,
        env=env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    last = tmp_path / "last.ckpt"
    if kind == "atomic":
        state = torch.load(last, weights_only=False)  # the first save, whole
        assert state["global_step"] == 2 and finite(state["state_dict"])
    else:  # the control: Lightning's in-place write leaves a broken file (what the atomic write prevents)
        with pytest.raises((RuntimeError, EOFError, OSError)):
            torch.load(last, weights_only=False)


def test_sigkill_then_resume_finishes(tmp_path):
    args = toy_fit_args(tmp_path, 2, 6, "--model.sleep", "0.25", "--checkpoint.every_n_batches", "2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aigc_lightning", *args],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    deadline, step = time.monotonic() + 120, 0
    try:
        while step < 8 and proc.poll() is None and time.monotonic() < deadline:  # 4 batches: mid-epoch 0
            time.sleep(0.1)
            if last.exists():
                step = torch.load(last, weights_only=False)["global_step"]  # atomic: never half-written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and step >= 8, proc.stderr.read()[-2000:]
    assert step < 24  # killed before the end: there is something left to resume

    main(toy_fit_args(tmp_path, 2, 6, "--ckpt_path", str(last)))
    final = torch.load(
        tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt", weights_only=False
    )
    assert final["epoch"] == 1 and final["global_step"] == 2 * 6 * 2  # the whole schedule, nothing repeated
    assert int(final["state_dict"]["batches"]) == 12 and finite(final["state_dict"])


def resume_path(message: str) -> Path:
    """The file a stopped run's one line names (``… resume with --ckpt_path PATH[ (…)]``); it must exist."""
    assert message.count("\n") == 0 and "resume with --ckpt_path " in message, message
    path = Path(message.split("resume with --ckpt_path ", 1)[1].split(" (", 1)[0])
    assert path.is_file(), message
    return path


def test_nan_loss_without_any_earlier_save_writes_last_ckpt_and_resumes(tmp_path):
    # the DCGAN digits config as a user runs it (periodic saves every 500 batches: none before batch 3), a
    # corrupt batch 3 makes D's loss NaN; D's BatchNorm statistics took NaN in that forward and are put back
    config = str(ROOT / "configs" / "gan" / "dcgan_digits.yaml")
    limits = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6", "--trainer.default_root_dir",
              str(tmp_path), "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
              "--model.generator.init_args.width", "8", "--model.discriminator.init_args.width", "8",
              "--data.batch_size", "16"]  # fmt: skip
    nan = ["--trainer.callbacks+=test_faults.NaNInBatch", "--trainer.callbacks.at_batch", "3"]
    proc = subprocess.run(
        [sys.executable, "-m", "aigc_lightning", "fit", "--config", config, *limits, *nan],
        env=env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and line.startswith("error: train/d_loss became nan at batch 3"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = resume_path(line)
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 6 and state["counters"]["batches"] == 3  # batch 3 was not applied
    assert finite(state["state_dict"]) and [p.name for p in last.parent.iterdir()] == ["last.ckpt"]

    main(["fit", "--config", config, *limits, "--ckpt_path", str(last)])
    final = torch.load(tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 2 * 6 and final["counters"]["batches"] == 6  # continued, nothing lost or doubled


def test_nan_loss_after_a_periodic_save_names_it_without_writing_twice(tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(toy_fit_args(tmp_path, 3, 4, "--model.nan_at_batch", "5", "--checkpoint.every_n_batches", "1"))
    message = str(stop.value.code)
    assert message.startswith("error: train/loss_a became nan at batch 5")
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert resume_path(message) == folder / "last.ckpt"
    last = torch.load(folder / "last.ckpt", weights_only=False)
    assert last["global_step"] == 10 and int(last["state_dict"]["batches"]) == 5  # saved after batch 4
    assert finite(last["state_dict"])
    epoch_end = torch.load(next(folder.glob("epoch=0-*.ckpt")), weights_only=False)
    assert finite(epoch_end["state_dict"]) and epoch_end["global_step"] == 8


def test_nan_weights_are_never_written(tmp_path):
    args = toy_fit_args(tmp_path, 1, 4, "--checkpoint.every_n_batches", "1")
    args += ["--trainer.callbacks", "reliability_toy.PoisonWeights", "--trainer.callbacks.at_batch", "2"]
    with pytest.raises(SystemExit) as stop:
        main(args)
    message = str(stop.value.code)
    assert "weights became NaN/inf by batch 3" in message and "(an earlier state; the weights are NaN/inf)" in message
    last = torch.load(resume_path(message), weights_only=False)
    assert last["global_step"] == 4 and finite(last["state_dict"])  # batch 1's save, not the poisoned one


def test_nan_at_the_first_batch_names_no_file(tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(toy_fit_args(tmp_path, 1, 4, "--model.nan_at_batch", "0"))
    assert str(stop.value.code).endswith("; no checkpoint to resume from (no optimizer step had been taken yet)")
    assert not list(tmp_path.rglob("*.ckpt"))


def test_last_checkpoint_holds_the_final_weights_when_the_last_epoch_has_no_validation(tmp_path):
    # validation (and with it the epoch-end saves) every 2nd epoch, 3 epochs: the end of training saves last.ckpt
    main(toy_fit_args(tmp_path, 3, 2, "--trainer.check_val_every_n_epoch", "2", "--checkpoint.every_n_batches", "0"))
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    last = torch.load(folder / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 * 3 * 2 and int(last["state_dict"]["batches"]) == 6
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=1-step=8.ckpt", "last.ckpt"]  # nothing half-written


def stop_mid_fit(root: Path, sig: signal.Signals) -> tuple[subprocess.CompletedProcess, float]:
    """Start a toy fit (0.25 s per batch, periodic saves off), send ``sig`` after its 5th batch began."""
    args = toy_fit_args(root, 2, 6, "--model.sleep", "0.25", "--checkpoint.every_n_batches", "0")
    proc = subprocess.Popen([sys.executable, "-m", "aigc_lightning", *args], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    logs, deadline = root / "lightning_logs" / "version_0", time.monotonic() + 120
    while not (logs / "hparams.yaml").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # written when training starts
    time.sleep(1.1)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr), time.monotonic() - sent


@pytest.mark.parametrize(("sig", "status", "line"), [(signal.SIGTERM, 143, "error: stopped by SIGTERM; "),
                                                     (signal.SIGINT, 130, "error: stopped by Ctrl-C (SIGINT); ")])  # fmt: skip
def test_signal_mid_fit_saves_that_moment_and_exits_non_zero(tmp_path, sig, status, line):
    proc, seconds = stop_mid_fit(tmp_path, sig)
    last_line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == status and last_line.startswith(line), proc.stderr[-3000:]
    assert seconds < 10 and "Traceback" not in proc.stderr
    state = torch.load(resume_path(last_line), weights_only=True)
    batches = int(state["state_dict"]["batches"])
    assert 1 <= batches < 12 and state["global_step"] == 2 * batches  # stopped between batches, never inside one
    assert [p.name for p in resume_path(last_line).parent.iterdir() if p.name.startswith(".")] == []

    main(toy_fit_args(tmp_path, 2, 6, "--ckpt_path", str(resume_path(last_line))))
    final = torch.load(tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 2 * 6 * 2 and int(final["state_dict"]["batches"]) == 12


class FailAt(Callback):
    """Raises ``RuntimeError("boom")`` at the start of training batch ``at_batch``: a bug inside training.

    Args:
        at_batch: the batch that raises.
    """

    def __init__(self, at_batch: int = 3) -> None:
        self.at_batch = at_batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if compat.batches_processed(trainer) == self.at_batch:
            raise RuntimeError("boom")


def test_exception_in_training_keeps_its_traceback_and_names_the_saved_state(tmp_path):
    args = toy_fit_args(tmp_path, 1, 6, "--checkpoint.every_n_batches", "0", "--trainer.callbacks+=test_faults.FailAt")
    with pytest.raises(RuntimeError, match="boom") as error:
        main(args)
    note = error.value.__notes__[-1]
    assert note.startswith("error: training stopped by this exception; resume with --ckpt_path ")
    state = torch.load(resume_path(note), weights_only=True)
    assert state["global_step"] == 6 and int(state["state_dict"]["batches"]) == 3


def test_full_disk_during_a_save_gives_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    real_save, calls = TorchCheckpointIO.save_checkpoint, []

    def full_disk(self, checkpoint, path, storage_options=None):
        calls.append(path)
        if len(calls) < 3:
            return real_save(self, checkpoint, path, storage_options)
        with open(path, "wb") as f:
            f.write(b"partial")  # what a write that runs out of space leaves
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", full_disk)
    with pytest.raises(SystemExit) as stop:
        main(toy_fit_args(tmp_path, 1, 6, "--checkpoint.every_n_batches", "1"))
    message = str(stop.value.code)
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert message.startswith(f"error: could not write {folder / 'last.ckpt'} (No space left on device); the previous")
    assert message.endswith("(an earlier state; writing a newer one failed too)")
    assert torch.load(resume_path(message), weights_only=True)["global_step"] == 4  # the second save, whole
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]  # no partial temporary file


def test_stale_temp_files_are_removed_when_a_run_starts_in_the_folder(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / ".last.ckpt.tmp").write_bytes(b"x" * 100)  # what a SIGKILL during a write leaves
    (folder / "notes.txt").write_text("kept")
    main(toy_fit_args(tmp_path, 1, 2, "--checkpoint.dirpath", str(folder)))
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=4.ckpt", "last.ckpt", "notes.txt"]
