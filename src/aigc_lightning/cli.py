"""``python -m aigc_lightning {fit,validate,test,predict}``: LightningCLI with model and data in subclass mode.

What this adds to a plain LightningCLI:
- ``--checkpoint.*``: a ModelCheckpoint that is always there with ``save_last=True``, so every run has
  ``checkpoints/last.ckpt`` to resume from (``fit --ckpt_path …/last.ckpt``).
- ``--images.*``: an ``ImageLogger`` that is always there: grids of the model's ``images_to_log`` (first batch,
  every ``log_images_every_n_batches`` batches, end of training; set per config in its ``images:`` section).
- the data's image shape flows into the networks: any network in the model's config with a ``channels``,
  ``image_size`` or ``frames`` (clips) argument gets the DataModule's values, so changing the data is enough.
- ``predict --output_dir DIR --num_samples N --seed S [--overwrite true]`` (``cli_predict``): generative models
  (those with ``sample``) predict from seeds S … S+N-1 (``DIR/000000.png`` … and ``grid.png``), other models from
  their DataModule's ``predict_dataloader``; ``ImageWriter`` refuses any data loss before work, then writes files.
- each run its own ``version_N`` folder (``compat.claim_version_folder``).
- no ``--optimizer`` / ``--lr_scheduler``: models declare one ``OptimizerCallable`` per network instead (a GAN
  needs two; LightningCLI's automatic optimizer would put all parameters under one).
- Lightning's default progress bar becomes ``ProgressBar``: redrawn at most every 0.1 s, not every batch.
- ``UserError`` (bad data, files, options) ends with one ``error: …`` line instead of a traceback.
- a parse error (unknown key, wrong type, number out of range; in a config file or an option), a network size,
  a Trainer number out of range or an unwritable folder ends with one ``error: …`` line (``cli_errors``).
"""

from __future__ import annotations

import gc
import inspect
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

# isort: off
from aigc_lightning import compat  # first: its start-up patch must run before Lightning is imported

# isort: on
import torch.distributed
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from aigc_lightning.callbacks.checkpoint import AtomicCheckpoint, check_checkpoint_file
from aigc_lightning.callbacks.images import ImageLogger
from aigc_lightning.callbacks.progress import ProgressBar
from aigc_lightning.callbacks.resume import RNGState
from aigc_lightning.cli_args import integer_batch_limits, model_flag_keys, namespace_path
from aigc_lightning.cli_errors import (
    check_trainer_numbers,
    check_writable_folder,
    output_folders,
    parse_error_line,
    size_option,
    trainer_refusal,
)
from aigc_lightning.cli_labels import with_labels
from aigc_lightning.cli_predict import add_predict_arguments, prepare_predict
from aigc_lightning.compat import SubcommandHooks
from aigc_lightning.errors import UserError
from aigc_lightning.nets.sizes import SizeError

SHAPE_KEYS = (
    "channels",
    "image_size",
    "frames",
    "num_classes",
    "class_names",
)  # frames: clips; classes: cli_labels
DEFAULT_EVERY_N_BATCHES = 500  # periodic last.ckpt: a kill loses at most this many batches
TRAINER_PARAMETERS = list(inspect.signature(Trainer.__init__).parameters)


def link_image_shape(model_cfg: Any, data_args: Any) -> None:
    """Set ``channels`` / ``image_size`` of every network nested in ``model_cfg`` from the data's arguments.

    A jsonargparse ``link_arguments`` needs one fixed target path, but the target differs per model
    (``generator``/``discriminator``, ``encoder``/``decoder``, nothing for style transfer), so the link is a walk
    over the model's nested ``class_path`` configs instead.
    """
    if not isinstance(model_cfg, Namespace):
        return
    init_args = model_cfg.get("init_args")
    if isinstance(init_args, Namespace):
        for key in SHAPE_KEYS:
            if key in init_args and data_args is not None and data_args.get(key) is not None:
                value = data_args[key]  # a plain int: PositiveInt does not serialise to YAML
                init_args[key] = list(value) if isinstance(value, list) else int(value)
        for value in vars(init_args).values():
            for item in value if isinstance(value, list) else [value]:
                link_image_shape(item, data_args)


OPTION = re.compile(r"--([\w.]+)")


class AigcParser(LightningArgumentParser):
    """LightningCLI's parser, with one ``error: …`` line (see ``cli_errors.parse_error_line``) instead of the
    usage text and nested union errors."""

    # the subcommands' parsers, whose usage lists the keys that the root parser checks config files against
    option_parsers: tuple[LightningArgumentParser, ...] = ()

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # a nested parser: its error becomes part of the outer parser's message
            super().error(message, ex)
        usages = [p.format_usage() for p in (self, *self.option_parsers)]
        options = [option for usage in usages for option in OPTION.findall(usage)]
        sys.stderr.write(f"error: {parse_error_line(message, options, self.prog)}\n")
        self.exit(2)


class AigcCLI(SubcommandHooks):
    """The project's LightningCLI; see the module docstring for what it adds."""

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        compat.skip_failing_nvml_check()  # lightning's import made every optimizer step probe for NVML
        command_line = sys.argv[1:] if args is None else args
        first = command_line[0] if isinstance(command_line, (list, tuple)) and command_line else None
        self._invoked = first if run and first in LightningCLI.subcommands() else None
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            parser_class=AigcParser,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            **kwargs,
        )

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        """Only the subcommand on the command line, when there is one: each subcommand's parser (Trainer,
        model and data signatures) takes ~20 ms to build, and ``fit`` never needs the other three's. With no
        subcommand (``--help``) or an unknown one, all four, so the help and the error list every choice."""
        every = LightningCLI.subcommands()
        invoked = getattr(self, "_invoked", None)
        return {invoked: every[invoked]} if invoked else every

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # AtomicCheckpoint: ModelCheckpoint + atomic writes, no non-finite weights, last.ckpt every N batches.
        parser.add_lightning_class_args(AtomicCheckpoint, "checkpoint")
        parser.set_defaults(
            {"checkpoint.save_last": True, "checkpoint.every_n_batches": DEFAULT_EVERY_N_BATCHES}
        )
        parser.add_lightning_class_args(ImageLogger, "images")
        self._option_parsers = [*getattr(self, "_option_parsers", []), parser]

    def add_subcommand_arguments(self, parser: LightningArgumentParser, subcommand: str) -> None:
        if subcommand == "predict":
            add_predict_arguments(parser)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        command_line = sys.argv[1:] if args is None else args
        self._model_keys = model_flag_keys(command_line)
        self._integer_limits = integer_batch_limits(command_line)
        if isinstance(parser, AigcParser):
            parser.option_parsers = tuple(self._option_parsers)
        super().parse_arguments(parser, args)
        # before LightningCLI reads the checkpoint's hyperparameters, whose errors do not name the file
        config = self.config.get(self.config.get("subcommand") or "", self.config)
        if isinstance(config, Namespace) and config.get("ckpt_path"):
            check_checkpoint_file(config["ckpt_path"])
        # before seed_everything's "Seed set to" line and any instantiation: the error is the only line on stderr
        check_trainer_numbers(config.get("trainer"))
        if (
            self.config.get("subcommand") != "predict"
        ):  # predict writes only --output_dir, its writer checks it
            for option, folder in output_folders(config):
                check_writable_folder(folder, option)

    def load_checkpoint_hparams(self, load: Callable[[], None]) -> None:
        # LightningCLI applies the checkpoint's hyper-parameters *over* the command line, which would silently
        # drop e.g. ``predict --ckpt_path … --model.truncation_psi 0.7``. Precedence here: config files <
        # checkpoint < ``--model.*`` options typed on the command line.
        subcommand = self.config.get("subcommand")
        if not (subcommand and self._model_keys and self.config[subcommand].get("ckpt_path")):
            load()
            return
        typed = self.config[subcommand].model.clone()
        load()
        model = self.config[subcommand].model
        for key in self._model_keys:
            path = namespace_path(typed, key)
            if path is not None and namespace_path(model, path) is not None:
                model[path] = typed[path]

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as e:  # a network's SizeError arrives wrapped in jsonargparse's union error
            size = user_error_in(e)
            if not isinstance(size, SizeError):
                raise
            config = self.config[self.subcommand] if self.subcommand else self.config
            option = size_option(config, size)
            if option is None:
                raise size from e
            needs = f"{size.owner} needs {size.name} >= {size.minimum}"
            raise UserError(
                f"--{option} {size.value} is out of range ({needs}); pass an integer >= {size.minimum}"
            ) from e

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (
            MisconfigurationException,
            ValueError,
        ) as e:  # Lightning's own checks of the Trainer's options
            config = self.config[self.subcommand] if self.subcommand else self.config
            raise UserError(trainer_refusal(e, config.get("trainer"), TRAINER_PARAMETERS)) from e
        if getattr(self.model, "ddp_find_unused_parameters", False):  # e.g. the GAN (modules/gan.py says why)
            compat.find_unused_parameters(
                trainer.strategy
            )  # before fit wraps the model; a user's setting wins
        for name in self._integer_limits:
            if getattr(trainer, name) == 1:
                setattr(trainer, name, 1)  # one batch, as written (see integer_batch_limits)
        if not any(isinstance(c, RNGState) for c in trainer.callbacks):
            # RNG states in every checkpoint (exact resume); it has nothing to configure
            trainer.callbacks.append(RNGState())
        bar = trainer.progress_bar_callback
        if (
            type(bar) is TQDMProgressBar and bar.refresh_rate == 1
        ):  # Lightning's default bar, not a configured one
            trainer.callbacks[trainer.callbacks.index(bar)] = ProgressBar()
        if rank_zero_only.rank == 0:  # each run its own version_N, even when two start at the same moment
            for logger in trainer.loggers:
                try:
                    compat.claim_version_folder(logger)
                except OSError as e:
                    raise UserError(
                        f"cannot create the run's log folder under {logger.root_dir} ({e.strerror}); pass a writable "
                        "--trainer.default_root_dir"
                    ) from e
        return trainer

    def before_instantiate_classes(self) -> None:
        if self.subcommand not in (None, "fit"):
            # config.yaml describes a training run; validate/test/predict would write theirs into a new version_N
            # folder, or, with the logger off, over the training run's own config.yaml.
            self.save_config_callback = None
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand == "predict":
            config.trainer.logger = False  # predict writes PNGs only; no empty version_N folder per call
        data = config.get("data")
        link_image_shape(config.get("model"), with_labels(config.get("model"), data, self.subcommand))

    def before_predict(self) -> None:
        self.datamodule = prepare_predict(
            self.model, self.datamodule, self.trainer, self.config_init[self.subcommand]
        )


def user_error_in(e: BaseException) -> UserError | None:
    """The ``UserError`` in ``e``'s cause/context chain: jsonargparse wraps errors of nested constructors (VGG
    features inside StyleTransfer) in its own ``ValueError``, and DataLoader workers re-raise with context."""
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def close_process_group(finished: bool) -> None:
    """Destroy the ``torch.distributed`` process group before the interpreter exits.

    Lightning registers this only for NCCL. A gloo group (CPU DDP) left alive keeps C++ worker threads that are
    torn down during interpreter finalisation and abort the process ("terminate called without an active
    exception", exit -6) after a run that succeeded (e.g. 2-process CPU predict). After a finished run
    the ranks meet at a barrier first so none closes its sockets while another is still talking.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if finished:
        try:
            torch.distributed.barrier()
        except RuntimeError:  # a peer already exited (it failed): nothing left to wait for
            pass
    torch.distributed.destroy_process_group()


def run() -> None:
    """The process entry point (``python -m aigc_lightning``, the ``aigc-lightning`` script): ``main()``, then a
    fast interpreter exit.

    After a command, CPython's shutdown would spend over a second collecting garbage cycles among the ~460,000
    objects torch, Lightning and jsonargparse keep alive (end of ``main`` to process exit: 1.35 s, 0.2 s after
    ``gc.freeze()``; ``python -m bench exit_time``). ``gc.freeze()`` takes them out of the collector's
    view; modules are still torn down, objects released and finalised by reference counting, atexit handlers run.
    Only garbage *cycles* left at exit go uncollected, whose finalisers CPython does not promise to run at exit
    anyway (files and loggers are closed before ``main`` returns). Not inside ``main()``: tests call it in-process,
    where a frozen heap would keep every later garbage cycle alive.
    """
    try:
        main()
    finally:
        gc.freeze()


def main(args: Any = None) -> None:
    """Run one command (``fit``, ``validate``, ``test``, ``predict``; ``demo``) from ``args`` or the command line.

    A training run that stops early ends with a non-zero status and one line naming the checkpoint to resume
    from, which ``AtomicCheckpoint.on_exception`` wrote and recorded on the exception (``errors.resume_hint``):
    SIGTERM exits 143 and Ctrl-C 130 (128 + the signal, what schedulers and shells report for them; Lightning's
    own exits are 0 for SIGTERM, a ``SystemExit``, and 1 for Ctrl-C), a NaN loss or bad input 1; any other
    exception keeps its traceback, with the line as its last note.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from aigc_lightning.errors import resume_hint

    command_line = sys.argv[1:] if args is None else args
    if isinstance(command_line, (list, tuple)) and command_line[:1] == ["demo"]:
        from aigc_lightning.demo import main as demo  # Gradio, no Trainer

        return demo(list(command_line[1:]))
    finished = False
    try:
        AigcCLI(args=args)
        finished = True
    except SystemExit as e:
        hint = resume_hint(e)
        if isinstance(e, SIGTERMException):
            sys.stderr.write(f"error: stopped by SIGTERM; {hint or 'training had not started'}\n")
            sys.exit(143)
        if isinstance(e.__context__, KeyboardInterrupt) and hint:
            sys.stderr.write(f"error: stopped by Ctrl-C (SIGINT); {hint}\n")
            sys.exit(130)
        raise
    except Exception as e:
        user_error = user_error_in(e)
        hint = resume_hint(e) or (user_error and resume_hint(user_error))
        if user_error is not None:
            sys.exit(f"error: {user_error}" + (f"; {hint}" if hint else ""))
        if hint:
            e.add_note(f"error: training stopped by this exception; {hint}")
        if not isinstance(e, RuntimeError) or "Error(s) in loading state_dict" not in str(e):
            raise
        # the checkpoint's networks differ from the configured ones (e.g. another image_size or width)
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        sys.exit(
            f"error: the --ckpt_path checkpoint does not fit the configured model ({detail}); use the config "
            "it was trained with (config.yaml in its lightning_logs/version_N folder) or a checkpoint of this "
            "model"
        )
    finally:
        close_process_group(finished)
