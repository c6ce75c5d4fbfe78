"""Every private Lightning / jsonargparse name that ``compat.py`` relies on exists on the installed versions, with the
shape compat.py uses; and no other file under src/ touches one. An upgrade that moves an internal fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.strategies import DDPStrategy

from aigc_lightning import compat
from aigc_lightning.cli import AigcCLI
from conftest import ROOT

PRIVATE = re.compile(
    r"_ddp_kwargs|_logger_connector|_prepare_subcommand_parser|_parse_ckpt_path|(?<!on)_save_checkpoint|_save_last_checkpoint"
    r"|_monitor_candidates|_last_global_step_saved|\._update\(|\._compute\(|lightning\.pytorch\.overrides"
    r"|should_update_logs|_find_last_checkpoints"
)
NST_OWNED = {"modules/style_transfer.py"}  # the style-transfer helper moves its internals into compat.py itself


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_lightning_cli_private_hooks_keep_their_signatures():
    assert params(LightningCLI._prepare_subcommand_parser) == ["self", "klass", "subcommand", "kwargs"]
    assert inspect.signature(LightningCLI._prepare_subcommand_parser).return_annotation in (
        LightningArgumentParser,
        "LightningArgumentParser",
    )
    assert params(LightningCLI._parse_ckpt_path) == ["self"]
    # our overrides are the ones LightningCLI calls
    assert AigcCLI._prepare_subcommand_parser is compat.SubcommandHooks._prepare_subcommand_parser
    assert AigcCLI._parse_ckpt_path is compat.SubcommandHooks._parse_ckpt_path
    assert "parser_class" in params(LightningCLI.__init__)


def test_logger_connector_and_batch_progress():
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, log_every_n_steps=1)
    assert isinstance(compat.logger_records_batch(trainer), bool)
    assert compat.batches_processed(trainer) == 0


def test_model_checkpoint_internals():
    callback = ModelCheckpoint()
    assert params(ModelCheckpoint._save_last_checkpoint) == ["self", "trainer", "monitor_candidates"]
    assert params(ModelCheckpoint._monitor_candidates) == ["self", "trainer"]
    assert hasattr(callback, "_last_global_step_saved")
    assert compat.last_saved_step(callback) == 0


def test_ddp_kwargs_are_a_dict_that_find_unused_parameters_fills():
    strategy = DDPStrategy(accelerator="cpu")
    assert isinstance(strategy._ddp_kwargs, dict)
    compat.find_unused_parameters(strategy)
    assert strategy._ddp_kwargs["find_unused_parameters"] is True
    explicit = DDPStrategy(accelerator="cpu", find_unused_parameters=False)
    compat.find_unused_parameters(explicit)
    assert explicit._ddp_kwargs["find_unused_parameters"] is False  # the user's choice wins


def test_no_private_name_outside_compat():
    src = ROOT / "src" / "aigc_lightning"
    offenders = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if p.name != "compat.py" and PRIVATE.search(p.read_text()) and str(p.relative_to(src)) not in NST_OWNED
    ]
    assert offenders == []


def test_checkpoint_io_plugin_is_lightnings_public_extension_point(tmp_path):
    from aigc_lightning.callbacks.checkpoint import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    io.save_checkpoint({"x": torch.ones(2)}, tmp_path / "a.ckpt")
    assert torch.equal(io.load_checkpoint(tmp_path / "a.ckpt")["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]  # no temporary file left behind


def test_lightning_still_sets_the_nvml_check_that_skip_failing_nvml_check_undoes(monkeypatch):
    import ctypes
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_NVML_BASED_CUDA_CHECK"}
    code = "import os, lightning; print(os.environ.get('PYTORCH_NVML_BASED_CUDA_CHECK'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1", "Lightning no longer sets PYTORCH_NVML_BASED_CUDA_CHECK: drop skip_failing_nvml_check"
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        has_driver = True
    except OSError:
        has_driver = False
    assert compat.skip_failing_nvml_check() is not has_driver
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == ("1" if has_driver else "0")
    assert torch.cuda.is_available() is (has_driver and torch.cuda.device_count() > 0)
    assert compat.skip_failing_nvml_check() is False  # once is enough


def test_torchmetrics_still_imports_scipy_signal_that_defer_scipy_signal_defers():
    from pathlib import Path

    import torchmetrics

    source = Path(torchmetrics.__file__).read_text()
    assert "import scipy.signal" in source and 'hasattr(scipy.signal, "hamming")' in source, (
        "torchmetrics no longer imports scipy.signal at import time (issue #3457 fixed): delete "
        "compat.defer_scipy_signal and its call"
    )


def test_cli_start_up_leaves_scipy_signal_unimported_until_it_is_used():
    import subprocess
    import sys

    code = """
import inspect, sys
import aigc_lightning.cli, torchmetrics, torchmetrics.audio
stand_in = sys.modules["scipy.signal"]
assert type(stand_in).__name__ == "_DeferredModule", type(stand_in)
inspect.getmodule(compile("0", "<probe>", "eval"))  # a code object: scans every module's __file__
assert sys.modules["scipy.signal"] is stand_in  # ... without importing it
import scipy, scipy.signal
assert sys.modules["scipy.signal"] is stand_in and scipy.signal is stand_in
window = scipy.signal.hamming(5)  # torchmetrics' patch, served by the stand-in: now the real import happens
real = sys.modules["scipy.signal"]
assert type(real).__name__ == "module" and scipy.signal is real
assert real.hamming is real.windows.hamming and list(window) == list(real.windows.hamming(5))
from scipy.signal import convolve  # any other name comes from the real module
assert stand_in.convolve is convolve is real.convolve
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_ckpt_path_last_is_resolved_through_find_last_checkpoints(tmp_path):
    from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

    from aigc_lightning.callbacks.checkpoint import AtomicCheckpoint

    assert params(ModelCheckpoint._find_last_checkpoints) == ["self", "trainer"]
    assert "callback._find_last_checkpoints(self.trainer)" in inspect.getsource(_CheckpointConnector._parse_ckpt_path)
    earlier = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"")
    trainer = Trainer(default_root_dir=tmp_path, callbacks=[AtomicCheckpoint()], enable_progress_bar=False)
    found = trainer.checkpoint_callback._find_last_checkpoints(trainer)
    assert found == {str(earlier)}  # Lightning's own search alone looks in version_1 only


def test_two_runs_that_pick_the_same_version_get_their_own_folders(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    # both loggers make their pick before either folder exists: what two runs started together see
    loggers = [TensorBoardLogger(tmp_path), TensorBoardLogger(tmp_path), CSVLogger(tmp_path)]
    for logger in loggers:
        monkeypatch.setattr(logger, "_get_next_version", lambda: 0)
        assert logger._version is None  # the internal claim_version_folder reads and sets
    assert all(compat.claim_version_folder(logger) for logger in loggers)
    assert [logger.version for logger in loggers] == [0, 1, 2]
    assert len({logger.log_dir for logger in loggers}) == 3 and all(Path(x.log_dir).is_dir() for x in loggers)
    pinned = TensorBoardLogger(tmp_path, version=7)
    assert not compat.claim_version_folder(pinned) and pinned.version == 7  # a version the user set stays


def test_lbfgs_still_caches_its_parameter_count_that_forget_parameter_count_resets():
    image = torch.ones(4, requires_grad=True)
    lbfgs = torch.optim.LBFGS([image], max_iter=2)

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        loss = (image**2).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)
    assert lbfgs._numel_cache == 4  # the internal compat.forget_parameter_count resets
    image.data = torch.ones(9)  # the next scale: a larger image in the same parameter
    lbfgs.state.clear()
    compat.forget_parameter_count(lbfgs)
    lbfgs.step(closure)
    assert lbfgs._numel_cache == 9
