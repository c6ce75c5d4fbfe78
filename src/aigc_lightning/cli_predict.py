"""``predict``'s options and set-up: what the CLI adds to Lightning's predict loop.

Generative models (those with ``sample``) predict from seeds: sample *i* comes from seed S+i, written as
``DIR/000000.png`` … and ``DIR/grid.png``. Other models predict from their DataModule's ``predict_dataloader``
(one output per input). Either way ``ImageWriter`` refuses any data loss before work, then writes the files.
"""

from __future__ import annotations

from typing import Any

from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser

from aigc_lightning.callbacks.writer import ImageWriter
from aigc_lightning.datamodules.seeds import SeedDataModule
from aigc_lightning.errors import UserError
from aigc_lightning.labels import class_index


def add_predict_arguments(parser: LightningArgumentParser) -> None:
    """``--output_dir``, ``--num_samples``, ``--seed``, ``--class_label``, ``--overwrite`` on ``predict``."""
    parser.add_argument("--output_dir", type=str, default="predictions", help="Folder for the PNGs.")
    parser.add_argument("--num_samples", type=PositiveInt, default=64, help="Samples to generate (GAN, VAE).")
    parser.add_argument("--seed", type=int, default=0, help="Sample i is generated from seed + i.")
    parser.add_argument(
        "--class_label",
        type=str | None,
        default=None,
        help="Conditional models: every sample of this class (an index or a class name); default: class i mod K.",
    )
    parser.add_argument(
        "--overwrite", type=bool, default=False, help="Replace outputs that exist (else: refused)."
    )
    add_video_arguments(parser)
    parser.set_defaults(return_predictions=False)  # images go to files, not into memory


def prepare_predict(
    model: LightningModule, datamodule: LightningDataModule, trainer: Trainer, config: Any
) -> LightningDataModule:
    """The DataModule predict runs on (seeds for generative models, else the configured one), with the writer
    added to the Trainer after its checks passed."""
    label, classes = config.get("class_label"), getattr(model, "num_classes", 0)
    if label is not None and not classes:
        raise UserError(
            f"--class_label {label} needs a class-conditional model, and this one was trained without classes; "
            "drop --class_label or pass a conditional model's config and checkpoint"
        )
    if label is not None:
        label = class_index(label, classes, model.hparams.get("class_names"))
    if config.get("video"):
        return prepare_video(model, trainer, config, label)
    if hasattr(model, "sample"):
        datamodule = SeedDataModule(
            config["num_samples"], config["seed"], getattr(datamodule, "batch_size", 64), label
        )
    # grid.png only beside seeded samples, whose digit names no input can take; predict on files writes one
    # output per input. The checks run on every rank alike, before any work (see ImageWriter.check).
    seeded = isinstance(datamodule, SeedDataModule)
    nrow = classes if seeded and classes and label is None else None  # sample i of class i mod K: a column per class
    writer = ImageWriter(config["output_dir"], grid=seeded, overwrite=config["overwrite"], nrow=nrow)
    plan = getattr(datamodule, "predict_plan", None)
    writer.check(plan() if callable(plan) else None)
    trainer.callbacks.append(writer)
    return datamodule


def add_video_arguments(parser: LightningArgumentParser) -> None:
    """``--video OUT.mp4`` and its options: a latent walk instead of PNGs (``callbacks.walk``)."""
    parser.add_argument("--video", type=str | None, default=None, help="Write a latent-walk MP4 here (GAN, VAE).")
    parser.add_argument("--video_seconds", type=PositiveFloat, default=4.0, help="Length; frames = seconds x fps.")
    parser.add_argument("--video_fps", type=PositiveInt, default=24, help="Frame rate of the walk video.")
    parser.add_argument("--video_loop", type=bool, default=False, help="Return to the first latent, seamlessly.")
    parser.add_argument("--video_keys", type=PositiveInt, default=4, help="Key latents visited (seeds S, S+1, …).")
    parser.add_argument("--video_size", type=NonNegativeInt, default=256, help="Shorter side in px (0: model's).")


def prepare_video(model: LightningModule, trainer: Trainer, config: Any, label: int | None) -> LightningDataModule:
    """One seed to predict (the loop loads the weights) and ``LatentWalkVideo`` writing ``--video`` at its start."""
    from pathlib import Path

    from aigc_lightning.callbacks.walk import LatentWalkVideo

    path = Path(config["video"])
    if not hasattr(model, "sample") or not hasattr(model, "latent_dim"):
        raise UserError(f"--video needs a generator (GAN, VAE); {type(model).__name__} has no latent space")
    if path.exists() and not config["overwrite"]:
        raise UserError(f"--video {path} exists; pass another path or --overwrite true")
    walk = LatentWalkVideo(path, config["video_seconds"], config["video_fps"], config["video_loop"],
                           config["video_keys"], config["seed"], config["video_size"], label)  # fmt: skip
    trainer.callbacks.append(walk)
    return SeedDataModule(1, config["seed"], 1, label)
