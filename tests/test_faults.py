"""Faults: a SIGKILLed run resumes from its periodic ``last.ckpt``; a kill during a checkpoint write leaves the
previous ``last.ckpt`` intact; a NaN loss or NaN weights stop training and keep the last finite checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from lightning.pytorch import Callback

from aigc_lightning import compat
from aigc_lightning.cli import main
from conftest import TESTS
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
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


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


def test_nan_loss_stops_and_keeps_last_finite_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(toy_fit_args(tmp_path, 3, 4, "--model.nan_at_batch", "5", "--checkpoint.every_n_batches", "1"))
    message = str(stop.value.code)
    assert message.startswith("error: train/loss_a became nan at batch 5") and "\n" not in message
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
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
    assert "weights became NaN/inf by batch 3" in str(stop.value.code)
    last = torch.load(
        tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False
    )
    assert last["global_step"] == 4 and finite(last["state_dict"])  # batch 1's save, not the poisoned one


def test_last_checkpoint_holds_the_final_weights_when_the_last_epoch_has_no_validation(tmp_path):
    # validation (and with it the epoch-end saves) every 2nd epoch, 3 epochs: the end of training saves last.ckpt
    main(toy_fit_args(tmp_path, 3, 2, "--trainer.check_val_every_n_epoch", "2", "--checkpoint.every_n_batches", "0"))
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    last = torch.load(folder / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 * 3 * 2 and int(last["state_dict"]["batches"]) == 6
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=1-step=8.ckpt", "last.ckpt"]  # nothing half-written
