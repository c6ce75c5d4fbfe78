"""Bit-for-bit end-of-epoch resume of the real models (tiny widths, a few batches) through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aigc_lightning.cli import main
from conftest import ROOT
from test_resume import compare

COMMON = ["--trainer.accelerator", "cpu", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip
MODELS = {
    # explicit rather than configs/gan/dcgan_digits.yaml: that config's metric callbacks evolve independently
    "gan": [
            "--seed_everything", "0", "--model", "aigc_lightning.modules.GAN",
            "--model.generator", "aigc_lightning.nets.Generator", "--model.generator.width", "8",
            "--model.discriminator", "aigc_lightning.nets.Discriminator", "--model.discriminator.width", "8",
            "--images.log_images_every_n_batches", "2", "--model.mean_latent_samples", "64", "--model.bn_stat_batches", "1",
            "--data", "aigc_lightning.datamodules.DigitsDataModule", "--data.image_size", "28", "--data.batch_size", "8",
            ],
    # StyleGAN2 with every piece of state a resume must restore: w_avg (a buffer), the path-length mean and ADA's p
    # and running sums (checkpoint["counters"]; the epoch ends between two adjustments of p), lazy-corrected Adam
    "stylegan2": [
            "--seed_everything", "0", "--config", str(ROOT / "configs/gan/stylegan2_digits.yaml"), "--trainer.callbacks", "[]",
            "--model.generator.init_args.channel_max", "8", "--model.generator.init_args.latent_dim", "16",
            "--model.discriminator.init_args.channel_max", "8", "--model.path_length.init_args.every", "2",
            "--model.r1.init_args.every", "2", "--model.ada.init_args.interval", "4",
            "--model.ada.init_args.ada_kimg", "1", "--model.ada.init_args.p", "0.5",
            "--images.log_images_every_n_batches", "2", "--data.batch_size", "8",
            ],
    "vae": ["--config", str(ROOT / "configs/vae/vae_digits.yaml"), "--model.encoder.init_args.hidden_dim", "16",
            "--model.decoder.init_args.hidden_dim", "16", "--model.val_importance_samples", "2",
            "--model.warmup_batches", "4", "--images.log_images_every_n_batches", "2", "--data.batch_size", "16",
            "--trainer.check_val_every_n_epoch", "1"],
}  # fmt: skip


# the VAE run is slow-marked to keep the suite short: the GAN (two optimizers, EMA, counters) and the toy module
# of test_resume.py cover the same machinery
@pytest.mark.parametrize("model", ["gan", "stylegan2", pytest.param("vae", marks=pytest.mark.slow)])
def test_model_resume_is_bit_for_bit(tmp_path, model):
    def fit(root: Path, epochs: int, *extra: str) -> None:
        main(["fit", *MODELS[model], *COMMON, "--trainer.max_epochs", str(epochs),
              "--trainer.default_root_dir", str(root), *extra])  # fmt: skip

    fit(tmp_path / "whole", 2)
    fit(tmp_path / "parts", 1)
    first = tmp_path / "parts" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    fit(tmp_path / "parts", 2, "--ckpt_path", str(first))
    a = torch.load(tmp_path / "whole/lightning_logs/version_0/checkpoints/last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "parts/lightning_logs/version_1/checkpoints/last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] > 0
    keys = ("state_dict", "optimizer_states", "lr_schedulers", "loops", "callbacks")
    extra = sorted(set(a) - set(keys) - {"pytorch-lightning_version", "hparams_name", "hyper_parameters"})
    differences = [
        d for key in (*keys, *extra) for d in compare(a[key], b[key], key)
    ]  # module's own keys too
    assert differences == []
    if model == "stylegan2":  # the state was really there to restore
        assert b["counters"]["pl_mean"] > 0 and 0 < b["counters"]["aug_p"] != 0.5, b["counters"]
