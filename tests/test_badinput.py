"""Bad input at the command line: each case ends with one ``error: …`` line naming the cause and the fix (or
jsonargparse's message for config errors), no traceback, and nothing already saved is touched."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from aigc_lightning.cli import main
from aigc_lightning.datamodules import ImageFolderDataModule
from conftest import ROOT, write_pngs
from reliability_toy import toy_fit_args


def one_line_error(args: list[str]) -> str:
    """Run the CLI and return its exit message, asserting it is a single ``error: …`` line."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    message = str(stop.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def folder_args(root, extra: tuple[str, ...] = ()) -> list[str]:
    args = toy_fit_args(root / "runs", 1, 2)
    data = args.index("aigc_lightning.datamodules.DigitsDataModule")
    args[data] = "aigc_lightning.datamodules.ImageFolderDataModule"
    args.remove("--data.binarize"), args.remove("true")
    return args + ["--data.root", str(root / "images"), "--data.channels", "1", *extra]


def test_missing_dataset_offline(tmp_path):
    args = toy_fit_args(tmp_path, 1, 2)
    args[args.index("aigc_lightning.datamodules.DigitsDataModule")] = (
        "aigc_lightning.datamodules.MNISTDataModule"
    )
    args.remove("--data.binarize"), args.remove("true")
    message = one_line_error(args + ["--data.root", str(tmp_path / "nothing"), "--data.download", "false"])
    assert "MNIST not found under" in message and "download" in message


def test_truncated_image(tmp_path):
    write_pngs(tmp_path / "images")
    whole = (tmp_path / "images" / "0.png").read_bytes()
    (tmp_path / "images" / "0.png").write_bytes(whole[: len(whole) // 2])
    message = one_line_error(folder_args(tmp_path))
    assert "cannot read image file" in message and "0.png" in message


def test_unreadable_image(tmp_path):
    write_pngs(tmp_path / "images")
    (tmp_path / "images" / "notes.jpg").write_text("not an image")
    assert "notes.jpg" in one_line_error(folder_args(tmp_path))


def test_empty_folder(tmp_path):
    (tmp_path / "images").mkdir()
    assert "no images found" in one_line_error(folder_args(tmp_path))


def test_unusual_image_modes_are_converted(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (12, 12, 4), dtype=np.uint8), mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 65535, (12, 12), dtype=np.uint16)).save(folder / "sixteen.png")  # I;16
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).convert("P").save(
        folder / "palette.png"
    )
    Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).convert("LA").save(
        folder / "grey_alpha.png"
    )
    for channels in (1, 3):
        data = ImageFolderDataModule(
            str(folder), image_size=8, channels=channels, batch_size=4, val_fraction=0
        )
        data.setup("fit")
        x, _ = next(iter(data.train_dataloader()))
        assert x.shape == (4, channels, 8, 8) and x.dtype == torch.float32
        assert -1 <= x.min() and x.max() <= 1 and x.std() > 0.05  # 16-bit scaled, not clipped to white
    main(folder_args(tmp_path, ("--data.val_fraction", "0", "--trainer.limit_val_batches", "0")))  # trains


def test_unknown_config_key(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(toy_fit_args(tmp_path, 1, 2, "--model.no_such_option", "3"))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "error:" in err and "no_such_option" in err and "Traceback" not in err


def test_wrong_type(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(toy_fit_args(tmp_path, 1, 2, "--trainer.max_epochs", "three"))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "error:" in err and "max_epochs" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    main(toy_fit_args(root, 1, 2))
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def test_incompatible_checkpoint(tmp_path, trained):
    before = hashlib.sha256(trained.read_bytes()).hexdigest()
    # trained on 8-px images; 16-px data gives every network other shapes than the checkpoint's
    message = one_line_error(
        toy_fit_args(tmp_path, 1, 2, "--data.image_size", "16", "--ckpt_path", str(trained))
    )
    assert "does not fit the configured model" in message and "size mismatch" in message
    assert hashlib.sha256(trained.read_bytes()).hexdigest() == before  # nothing saved is lost


@pytest.mark.parametrize("kind", ["missing", "folder", "text", "truncated", "plain_torch"])
def test_bad_checkpoint_file(tmp_path, trained, kind):
    path = tmp_path / "bad.ckpt"
    if kind == "folder":
        path.mkdir()
    elif kind == "text":
        path.write_text("hello")
    elif kind == "truncated":
        path.write_bytes(trained.read_bytes()[:2000])
    elif kind == "plain_torch":
        torch.save({"weight": torch.zeros(2)}, path)
    message = one_line_error(toy_fit_args(tmp_path, 1, 2, "--ckpt_path", str(path)))
    assert f"--ckpt_path {path}" in message


def test_output_dir_is_a_file(tmp_path, trained):
    (tmp_path / "out").write_text("keep me")
    config = trained.parent.parent / "config.yaml"
    args = [
        "predict",
        "--config",
        str(config),
        "--ckpt_path",
        str(trained),
        "--output_dir",
        str(tmp_path / "out"),
    ]
    assert "is a file" in one_line_error(args + ["--num_samples", "4"])
    assert (tmp_path / "out").read_text() == "keep me"


GAN_DIGITS = str(ROOT / "configs/gan/dcgan_digits.yaml")
VAE_DIGITS = str(ROOT / "configs/vae/vae_digits.yaml")


@pytest.mark.parametrize(
    "config,option,value",
    [
        (GAN_DIGITS, "data.batch_size", "0"),
        (GAN_DIGITS, "model.ema_decay", "1.5"),
        (GAN_DIGITS, "model.truncation_psi", "-1"),
        (GAN_DIGITS, "model.n_critic", "0"),
        (GAN_DIGITS, "images.log_images_every_n_batches", "-1"),
        (VAE_DIGITS, "model.beta", "-1"),
        (VAE_DIGITS, "data.val_fraction", "1"),
    ],
)
def test_out_of_range_number_is_one_line_at_parse_time(tmp_path, capsys, config, option, value):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", config, f"--{option}", value, "--trainer.default_root_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [err.strip()] and err.startswith(f"error: --{option} {value} is out of range")
    assert not (tmp_path / "lightning_logs").exists()  # refused before anything ran


@pytest.mark.parametrize("lr", ["0", "-1"])
def test_non_positive_learning_rate_is_one_message(tmp_path, lr):
    # torch.optim accepts lr=0 and its signature cannot carry a constraint: refused when the optimizer is built
    with pytest.raises(SystemExit) as stop:
        main([
            "fit", "--config", GAN_DIGITS, "--model.optimizer_g.init_args.lr", lr, "--trainer.fast_dev_run", "1",
            "--trainer.default_root_dir", str(tmp_path), "--trainer.callbacks", "[]",
        ])  # fmt: skip
    message = str(stop.value.code)
    assert message.startswith("error: --model.optimizer_g") and "learning rate" in message and "\n" not in message
