"""The ONE place that touches Lightning / jsonargparse internals (names with a leading underscore) and works
around their (and torchmetrics') side effects.

Each use below says why no public API does the job and names the upstream issue; ``tests/test_compat.py`` checks
every one against the installed versions, so an upgrade that moves an internal fails there, loudly, instead of
somewhere in a training run. ``pyproject.toml`` bounds lightning, jsonargparse and torchmetrics below the next
untested minor. Importing this module installs ``defer_scipy_signal``'s stand-in, so ``cli.py`` imports it before
anything imports Lightning.
Everything else in the package uses public API only (checkpoint writes go through a ``CheckpointIO`` plugin,
prediction files through a callback, metrics through torchmetrics' ``update``/``compute``).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable
from typing import Any

# ----------------------------------------------------------------------------------------------------------
# Start-up: runs when this module is imported, which ``cli.py`` does before anything imports Lightning.


class _DeferredModule(types.ModuleType):
    """Stands in for ``scipy.signal`` in ``sys.modules`` until one of its attributes is used, then imports the real
    module (which replaces it everywhere: ``sys.modules`` and the ``scipy`` package) and forwards to it."""

    def __getattr__(self, attr: str) -> Any:  # only called for attributes the stand-in does not have
        return getattr(_real_scipy_signal(), attr)


def _real_scipy_signal() -> types.ModuleType:
    if isinstance(sys.modules.get("scipy.signal"), _DeferredModule):
        del sys.modules["scipy.signal"]
        module = importlib.import_module("scipy.signal")
        if not hasattr(module, "hamming"):
            module.hamming = module.windows.hamming  # the patch torchmetrics would have applied
        return module
    return importlib.import_module("scipy.signal")


def _scipy_signal_hamming(*args: Any, **kwargs: Any) -> Any:
    return _real_scipy_signal().windows.hamming(*args, **kwargs)


def defer_scipy_signal() -> bool:
    """Import ``scipy.signal`` on first use instead of at ``import lightning``: 0.4-0.5 s of every command's start-up.

    ``torchmetrics/__init__.py`` (and its two ``audio`` packages) runs ``import scipy.signal`` to add
    ``scipy.signal.hamming`` for SRMRpy, a package torchmetrics itself never imports; Lightning imports torchmetrics
    to compare versions, so every ``python -m aigc_lightning`` pays for it, ~5 % of the 10-second VAE digits job
    (torchmetrics issue #3457, PRs #3459 / #3463 move the patch into torchmetrics' tests). This puts a stand-in for
    ``scipy.signal`` in ``sys.modules`` that already has ``hamming`` (so the ``hasattr`` check passes) and the
    spec/file attributes tools read without using the module (``inspect.getmodule`` scans every module's
    ``__file__``); any other attribute imports the real ``scipy.signal`` and forwards to it, with ``hamming``
    added as torchmetrics would. No-op if ``scipy.signal`` is already imported or SciPy is missing.
    ``tests/test_compat.py`` fails once torchmetrics stops importing it (then delete this).
    """
    if "scipy.signal" in sys.modules:
        return False
    try:
        import scipy

        spec = importlib.util.find_spec("scipy.signal")
    except ImportError:
        return False
    if spec is None:
        return False
    stand_in = _DeferredModule("scipy.signal")
    stand_in.__spec__, stand_in.__loader__, stand_in.__package__ = spec, spec.loader, "scipy.signal"
    stand_in.__file__ = spec.origin
    stand_in.hamming = _scipy_signal_hamming
    sys.modules["scipy.signal"] = stand_in
    scipy.signal = stand_in
    return True


defer_scipy_signal()

from lightning.pytorch import Trainer  # after the stand-in: Lightning imports torchmetrics
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.strategies import DDPStrategy, Strategy
from torch.nn.parallel import DistributedDataParallel

# ----------------------------------------------------------------------------------------------------------
# Trainer state


def logger_records_batch(trainer: Trainer) -> bool:
    """Whether the logger records this training batch's ``self.log`` values (every ``log_every_n_steps``).

    Each ``self.log`` costs ~0.7 ms of CPU (Lightning moves the stored result's whole state to the value's device
    on every call): ~1 % of a width-32 DCGAN batch for 5 scalars, 30 % of an MLP VAE's (docs/benchmarks.md,
    ``python -m bench vae_ablation``). Modules log per-batch scalars only where this holds (plus the
    first batch). Lightning keeps the answer on a private connector; its own LearningRateMonitor reads it the same
    way (no public property and no upstream issue asking for one yet).
    """
    return trainer._logger_connector.should_update_logs


def batches_processed(trainer: Trainer) -> int:
    """Training batches of the whole run so far, a resumed run's included (optimizer steps would count two per
    GAN batch). The loops' progress trackers are public attributes but undocumented, so they live here too."""
    return trainer.fit_loop.epoch_loop.batch_progress.total.processed


def skip_failing_nvml_check() -> bool:
    """Undo ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (set by ``import lightning``) on a machine without the NVIDIA driver.

    Lightning sets it so that ``torch.cuda.is_available()`` asks NVML instead of initialising CUDA (which would
    poison a later fork). torch then tries ``ctypes.CDLL("libnvidia-ml.so.1")`` on *every* call, uncached, and every
    optimizer step calls it (``Optimizer._accelerator_graph_capture_health_check``): on a machine with no driver the
    failing library search costs 50-70 us per step (Adam on 10 parameters: 81 vs 29 us of CPU), about 1 % of the MLP
    VAE's step. Without the driver there is nothing to initialise and no fork to poison, so torch's default check
    is equivalent; with the driver (a GPU machine) nothing changes. Returns whether it switched the check off.
    Not a private name, but a side effect of Lightning's import that it documents nowhere but its source
    (``lightning/fabric/__init__.py``); ``tests/test_compat.py`` fails if Lightning stops setting it.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1":
        return False
    try:
        ctypes.CDLL("libnvidia-ml.so.1")  # the name torch's NVML check loads
    except OSError:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"
        return True
    return False


# ----------------------------------------------------------------------------------------------------------
# DDP


def find_unused_parameters(strategy: Strategy) -> None:
    """Switch on DDP's ``find_unused_parameters`` for a plain ``--trainer.strategy ddp`` before it wraps the model.

    One ``DistributedDataParallel`` around G and D raises "parameters that were not used" on a GAN's first D
    step (Lightning issues #20328, #20866; PR #20936 proposes a GAN-aware strategy). The strategy name
    ``ddp_find_unused_parameters_true`` is the public way, but ``--trainer.strategy ddp`` must just work, and
    DDPStrategy has no public setter for its kwargs once built. A value the user set explicitly wins.
    """
    if isinstance(strategy, DDPStrategy):
        strategy._ddp_kwargs.setdefault("find_unused_parameters", True)


# ----------------------------------------------------------------------------------------------------------
# ModelCheckpoint


def disable_gradient_sync(strategy: Strategy) -> None:
    """Stop DDP from averaging gradients (and broadcasting buffers) across ranks, for a model whose ranks optimise
    different things (projection: each rank its own targets). ``no_sync()`` does this only around one call, and
    Lightning enters the DDP forward itself; the flags it toggles are DDP attributes without a public setter.
    Call in ``training_step`` before ``manual_backward``: with manual optimization Lightning sets
    ``require_backward_grad_sync`` back to True after every forward (``_DDPForwardRedirection``). No-op without
    DDP."""
    model = getattr(strategy, "model", None)
    if isinstance(model, DistributedDataParallel):
        model.require_backward_grad_sync = False
        model.require_forward_param_sync = False


def save_last_now(callback: ModelCheckpoint, trainer: Trainer) -> None:
    """Overwrite ``last.ckpt`` now, outside ModelCheckpoint's own schedule, without disturbing it.

    ModelCheckpoint counts ``every_n_train_steps`` in optimizer steps (Lightning issues #17167, #20674: manual
    optimization) and has no public "save last now". It also skips a save when ``_last_global_step_saved`` equals the current step, so the marker is
    put back afterwards: the end-of-epoch save, when it comes, still overwrites last.ckpt as the exact-resume point.
    """
    marker = callback._last_global_step_saved
    callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
    callback._last_global_step_saved = marker


def last_saved_step(callback: ModelCheckpoint) -> int:
    """The ``global_step`` of ModelCheckpoint's latest scheduled save (top-k and ``last.ckpt`` at epoch or
    validation end); ``save_last_now`` leaves it alone. No public attribute says whether ``last.ckpt`` is current
    (``last_model_path`` names the file, not the step)."""
    return callback._last_global_step_saved


class LastCheckpointSearch(ModelCheckpoint):
    """ModelCheckpoint whose ``--ckpt_path last`` also considers ``earlier_last_checkpoints(trainer)``.

    Lightning resolves ``ckpt_path="last"`` (``_CheckpointConnector._parse_ckpt_path``) before the callbacks'
    ``setup``, from each ModelCheckpoint's ``_find_last_checkpoints`` — which looks only in the folder of the run
    about to start. With a logger that is a new ``version_N``, so ``last`` never finds the previous run and training
    silently starts from scratch (Lightning issues #2735, closed "won't fix", and #4914: every run a new version,
    no automatic resume). This overrides that one private method; the newest file by modification time wins
    (Lightning's own rule among the candidates).
    """

    def earlier_last_checkpoints(self, trainer: Trainer) -> set[str]:
        """More candidate ``last*.ckpt`` paths for ``--ckpt_path last``; none by default."""
        return set()

    def _find_last_checkpoints(self, trainer: Trainer) -> set[str]:
        return super()._find_last_checkpoints(trainer) | self.earlier_last_checkpoints(trainer)


# ----------------------------------------------------------------------------------------------------------
# torch


def forget_parameter_count(optimizer: Any) -> None:
    """Make torch's LBFGS recount its parameters' elements at the next step (no-op for other optimizers).

    ``LBFGS`` caches the total in ``_numel_cache`` when it first steps and has no public way to reset it; style
    transfer restarts the same optimizer in place over an image of a new size (coarse-to-fine scales).
    ``tests/test_compat.py`` fails if torch renames the cache.
    """
    if hasattr(optimizer, "_numel_cache"):
        optimizer._numel_cache = None


# ----------------------------------------------------------------------------------------------------------
# Loggers


def claim_version_folder(logger: Any) -> bool:
    """Give a TensorBoard/CSV logger with an automatic version a ``version_N`` folder no other run has.

    Both loggers pick N as one more than the highest ``version_*`` folder and create it later, so two runs started
    at the same moment with the same root would both become ``version_0`` (mixed event files, one config.yaml
    overwritten). Here the folder is created with ``mkdir`` without ``exist_ok`` — atomic: exactly one process
    succeeds — moving on to N+1 until one is this run's, and the logger is pinned to it. Lightning has no public
    setter for a version once the logger is built (``_version``; Lightning issue #13245 asks for a unique-version
    option). Call on global rank 0 only: other ranks take the log dir from rank 0. Returns whether it claimed one.
    """
    if getattr(logger, "_version", 0) is not None or not hasattr(logger, "root_dir"):
        return False  # a version the user set, or a logger without version folders
    version = logger.version  # the logger's own pick: 1 + the highest existing folder
    while True:
        try:
            os.makedirs(os.path.join(logger.root_dir, f"version_{version}"))
            break
        except FileExistsError:
            version += 1
    logger._version = version
    return True


# ----------------------------------------------------------------------------------------------------------
# LightningCLI


class SubcommandHooks(LightningCLI):
    """LightningCLI with two hooks it lacks, implemented over its private methods.

    - ``add_subcommand_arguments(parser, subcommand)``: arguments of a single subcommand (predict's
      ``--output_dir``); ``add_arguments_to_parser`` is called for every subcommand without saying which
      (Lightning issue #12438, subcommand customisation).
    - ``load_checkpoint_hparams(load)``: wraps the step that applies ``--ckpt_path``'s hyper-parameters *over*
      the command line (Lightning issue #20310; PRs #21116, #21455 would change it), so a subclass can restore options the user typed.
    """

    def add_subcommand_arguments(self, parser: LightningArgumentParser, subcommand: str) -> None:
        """Add arguments to one subcommand's parser; nothing by default."""

    def load_checkpoint_hparams(self, load: Callable[[], None]) -> None:
        """Called with LightningCLI's own loader of the checkpoint's hyper-parameters; the default just calls it."""
        load()

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        self.add_subcommand_arguments(parser, subcommand)
        return parser

    def _parse_ckpt_path(self) -> None:
        self.load_checkpoint_hparams(super()._parse_ckpt_path)


__all__ = [
    "LastCheckpointSearch",
    "SubcommandHooks",
    "batches_processed",
    "claim_version_folder",
    "defer_scipy_signal",
    "disable_gradient_sync",
    "find_unused_parameters",
    "forget_parameter_count",
    "last_saved_step",
    "logger_records_batch",
    "save_last_now",
]
