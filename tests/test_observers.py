"""What a run shows in TensorBoard: ImageLogger grids from ``images_to_log`` at their cadence, and the run's headline
number as the HParams tab's ``hp_metric`` instead of Lightning's -1 placeholder."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aigc_lightning.callbacks import ImageLogger
from aigc_lightning.cli import AigcCLI
from conftest import ROOT

QUIET = ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false"]  # fmt: skip


METRICS = '[{"class_path": "aigc_lightning.callbacks.GenerativeMetrics", "init_args": {"num_samples": 16}}]'


def events(run: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def test_gan_fit_shows_grids_and_best_fid_as_hparams_metric(tmp_path):
    cli = AigcCLI(args=[
        "fit", "--config", str(ROOT / "configs/gan/dcgan_digits.yaml"), *QUIET,
        "--model.generator.init_args.width", "4", "--model.discriminator.init_args.width", "4",
        "--model.mean_latent_samples", "64", "--model.bn_stat_batches", "1",
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.check_val_every_n_epoch", "1", "--trainer.callbacks", METRICS,
        "--images.log_images_every_n_batches", "3", "--images.num_images", "16",
        "--data.batch_size", "16", "--trainer.default_root_dir", str(tmp_path),
    ])  # fmt: skip
    acc = events(Path(cli.trainer.logger.log_dir))
    fids = [e.value for e in acc.Scalars("val/fid")]
    hp = [e.value for e in acc.Scalars("hp_metric")]
    assert len(fids) == 2 and hp[-1] != -1 and math.isfinite(hp[-1])
    assert hp[-1] == min(fids)  # the best FID of the run, not the last
    # 4 batches, every 3rd: the first batch, batch 3, and the end of training (batch 4)
    for tag in ("train/samples_ema", "train/interpolation"):
        assert [e.step for e in acc.Images(tag)] == [1, 3, 4]


def test_vae_grids_reconstruct_fixed_validation_images_and_hparams_metric_is_iw_nll(tmp_path):
    cli = AigcCLI(args=[
        "fit", "--config", str(ROOT / "configs/vae/vae_digits.yaml"), *QUIET,
        "--model.encoder.init_args.hidden_dim", "16", "--model.decoder.init_args.hidden_dim", "16",
        "--model.val_importance_samples", "2", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.check_val_every_n_epoch", "1",
        "--trainer.limit_val_batches", "1", "--images.log_images_every_n_batches", "2", "--images.num_images", "8",
        "--data.batch_size", "16", "--trainer.default_root_dir", str(tmp_path),
    ])  # fmt: skip
    acc = events(Path(cli.trainer.logger.log_dir))
    assert acc.Scalars("hp_metric")[-1].value == acc.Scalars("val/nll_iw")[-1].value
    for tag in ("train/prior_samples", "train/reconstructions", "train/interpolations"):
        assert [e.step for e in acc.Images(tag)] == [1, 2], tag  # the first batch, then every 2nd (the last)
    logger = next(c for c in cli.trainer.callbacks if isinstance(c, ImageLogger))
    first_val = next(iter(cli.datamodule.val_dataloader()))[0][:8]
    assert torch.equal(logger.fixed_batch, first_val)  # the sanity check's first validation images, kept


@pytest.mark.skipif(
    importlib.util.find_spec("rich") is not None,
    reason="with rich installed (e.g. by the [demo] extra) Lightning's default bar is RichProgressBar, which the CLI keeps",
)
def test_progress_bar_redraws_at_most_every_min_interval_and_always_at_an_epoch_end(tmp_path, monkeypatch):
    from lightning.pytorch.callbacks import TQDMProgressBar

    from aigc_lightning.callbacks import ProgressBar

    draws: list[int] = []
    original = TQDMProgressBar.on_train_batch_end

    def spy(self, trainer, pl_module, outputs, batch, batch_idx):
        draws.append(batch_idx)
        original(self, trainer, pl_module, outputs, batch, batch_idx)

    monkeypatch.setattr(TQDMProgressBar, "on_train_batch_end", spy)
    # the bar's clock advances 1 ms per reading: batches "take" far less than 0.1 s however loaded the machine is
    from types import SimpleNamespace

    from aigc_lightning.callbacks import progress

    clock = iter(range(10**9))
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: next(clock) / 1000))

    def fit(*extra: str) -> AigcCLI:
        draws.clear()
        return AigcCLI(args=[
            "fit", "--config", str(ROOT / "configs/vae/vae_digits.yaml"), "--trainer.accelerator", "cpu",
            "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
            "--model.encoder.init_args.hidden_dim", "8", "--model.decoder.init_args.hidden_dim", "8",
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "12", "--trainer.limit_val_batches", "0",
            "--images.log_images_every_n_batches", "0", "--data.batch_size", "8",
            "--trainer.default_root_dir", str(tmp_path), *extra,
        ])  # fmt: skip

    cli = fit()
    bar = cli.trainer.progress_bar_callback
    assert type(bar) is ProgressBar  # the CLI put it in place of Lightning's default bar
    # 12 batches within 0.1 s: the first draws, then only the epoch's last batch
    assert draws == [0, 11]
    # without the time limit it is Lightning's bar: a redraw every batch
    fit("--trainer.callbacks", '[{"class_path": "aigc_lightning.callbacks.ProgressBar", '
        '"init_args": {"min_interval": 0}}]')  # fmt: skip
    assert draws == list(range(12))
    # a bar the user configured is kept as configured
    cli = fit("--trainer.callbacks", '[{"class_path": "lightning.pytorch.callbacks.TQDMProgressBar", '
              '"init_args": {"refresh_rate": 4}}]')  # fmt: skip
    assert type(cli.trainer.progress_bar_callback) is TQDMProgressBar
    assert draws == list(range(12))  # TQDMProgressBar's own hook, which decides per refresh_rate
