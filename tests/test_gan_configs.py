"""GAN configs through the CLI (in-process): every config trains on generated images; fit → predict → sample agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.io import decode_image

from aigc_lightning.cli import AigcCLI, main
from aigc_lightning.modules import GAN
from conftest import ROOT, write_pngs

TINY = [
    "--model.init_args.generator.init_args.width", "4",
    "--model.init_args.discriminator.init_args.width", "4",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]  # fmt: skip


@pytest.mark.parametrize(
    "config,size,channels",
    [("dcgan_mnist", 28, 1), ("dcgan_cifar10", 32, 3), ("dcgan_celeba64", 64, 3), ("dcgan_digits", 32, 1)],
)
def test_config_runs_on_generated_images(tmp_path, config, size, channels):
    images = write_pngs(tmp_path / "images", n=8, size=size, channels=channels)
    cli = AigcCLI(args=[
        "fit", "--config", str(ROOT / f"configs/gan/{config}.yaml"), "--trainer.fast_dev_run", "1",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.accelerator", "cpu", *TINY,
        "--data", "aigc_lightning.datamodules.ImageFolderDataModule", "--data.root", str(images),
        "--data.image_size", str(size), "--data.channels", str(channels), "--data.batch_size", "4",
    ])  # fmt: skip
    # one batch trained (two optimizer steps: D then G) by networks the data's shape was linked into
    assert cli.trainer.state.finished and cli.model.batches == 1 and cli.trainer.global_step == 2
    assert cli.model.generator.image_shape == (channels, size, size)
    assert cli.model.sample(2, seed=0).shape == (2, channels, size, size)


def fit_digits(tmp_path: Path) -> Path:
    main([
        "fit", "--config", str(ROOT / "configs/gan/dcgan_digits.yaml"), "--trainer.max_steps", "4",
        "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", str(tmp_path), *TINY,
        "--trainer.callbacks", "[]",  # no FID here: the metrics tests cover it
    ])  # fmt: skip
    return tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"


def predict_digits(tmp_path: Path, ckpt: Path, *extra: str) -> Path:
    out = tmp_path / "predictions"
    main([
        "predict", "--config", str(ROOT / "configs/gan/dcgan_digits.yaml"), "--ckpt_path", str(ckpt), *TINY,
        "--trainer.default_root_dir", str(tmp_path), "--trainer.callbacks", "[]",
        "--output_dir", str(out), "--num_samples", "5", "--seed", "42", *extra,
    ])  # fmt: skip
    return out


def assert_pngs_equal(out: Path, expected: torch.Tensor) -> None:
    for i in range(len(expected)):
        png = decode_image(str(out / f"{i:06d}.png"))[:1].float() / 255  # (1, H, W); grey saved as 3 equal planes
        torch.testing.assert_close(png, expected[i], rtol=0, atol=1 / 255 + 1e-6)


def test_digits_fit_predict_and_sample_agree(tmp_path):
    ckpt = fit_digits(tmp_path)
    out = predict_digits(tmp_path, ckpt)
    files = sorted(p.name for p in out.glob("*.png"))
    assert files == ["000000.png", "000001.png", "000002.png", "000003.png", "000004.png", "grid.png"]
    model = GAN.load_from_checkpoint(ckpt)  # rebuilt from the CLI's class_path hyperparameters
    assert model.batches == 2  # max_steps 4 = 2 batches of D step + G step
    assert_pngs_equal(out, model.sample(5, seed=42))


def test_predict_truncation_psi_flag(tmp_path):
    ckpt = fit_digits(tmp_path)
    out = predict_digits(tmp_path, ckpt, "--model.init_args.truncation_psi", "0.7")
    model = GAN.load_from_checkpoint(ckpt)
    expected = model.sample(5, seed=42, truncation_psi=0.7)
    assert not torch.allclose(expected, model.sample(5, seed=42, truncation_psi=1.0), atol=1e-3)
    assert_pngs_equal(out, expected)


def test_every_renamed_flat_option_names_a_real_object_and_argument():
    import importlib
    import inspect
    import re

    from aigc_lightning.modules.gan_renamed import RENAMED_OPTIONS, renamed_option_line

    gan_args = set(inspect.signature(GAN).parameters)
    for old, hint in RENAMED_OPTIONS.items():
        assert old not in gan_args or old == "loss", old  # gone from the signature (loss is now an object)
        line = renamed_option_line(f"model.init_args.{old}")
        assert line.startswith(f"--model.{old} ") and "; write model." in line and "\n" not in line
        assert re.match(r"model\.(\w+)", hint).group(1) in gan_args, hint  # the option it points to exists
        accepted = set()  # the arguments of the classes it names (WassersteinGP for loss's gp_weight)
        for path in re.findall(r"class_path: ([\w.]+)", hint):
            module, _, name = path.rpartition(".")
            accepted |= set(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
        names = re.findall(r"(\w+): (?:…|true)", hint.split("init_args", 1)[-1])
        assert names and set(names) <= accepted | {"class_path"}, (old, names)
    assert renamed_option_line("model.n_critic") is None
