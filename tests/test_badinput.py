"""Bad input at the command line: each case ends with one ``error: …`` line naming the cause and the fix (or
jsonargparse's message for config errors), no traceback, and nothing already saved is touched."""

from __future__ import annotations

import hashlib
import os
from argparse import ArgumentError

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveInt
from PIL import Image

from aigc_lightning import nets
from aigc_lightning.cli import main
from aigc_lightning.cli_errors import parse_error_line
from aigc_lightning.datamodules import ImageFolderDataModule
from aigc_lightning.export import main as export_main
from aigc_lightning.nets.sizes import SizeError
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


def cli_error(args: list[str], capsys) -> tuple[int, str]:
    """Run the CLI in-process: (exit status, its one ``error: …`` line), asserting there is one line and no
    usage text. Parser errors print the line and exit 2; other refusals exit with the line (status 1)."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    if isinstance(stop.value.code, str):
        status, line = 1, stop.value.code
    else:
        status, line = stop.value.code, err.strip()
    assert line.startswith("error: ") and "\n" not in line and "usage:" not in err, err or line
    return status, line


def gan_args(tmp_path, *extra: str) -> list[str]:
    return ["fit", "--config", GAN_DIGITS, "--trainer.default_root_dir", str(tmp_path), *extra]


@pytest.mark.parametrize(
    "extra,status,line",
    [
        (("--model.generator.init_args.width", "0"), 1,
         "error: --model.generator.init_args.width 0 is out of range (Generator needs width >= 1); pass an integer >= 1"),
        (("--model.generator.init_args.latent_dim", "-4"), 1,
         ("error: --model.generator.init_args.latent_dim -4 is out of range (Generator needs latent_dim >= 1); pass an "
         "integer >= 1")),
        (("--model.discriminator.init_args.width", "-1"), 1,
         ("error: --model.discriminator.init_args.width -1 is out of range (Discriminator needs width >= 1); pass an "
         "integer >= 1")),
        (("--trainer.max_epochs", "-5"), 1, "error: --trainer.max_epochs -5 is out of range; pass -1 (no limit) or a number >= 0"),
        (("--trainer.check_val_every_n_epoch", "0"), 1,
         ("error: --trainer.check_val_every_n_epoch 0 is out of range; pass a number >= 1 (or null to validate by "
         "val_check_interval)")),
        (("--checkpoint.every_n_batches", "-1"), 2,
         "error: --checkpoint.every_n_batches -1 is out of range (NonNegativeInt); pass a value with v>=0"),
        (("--model.optimizer_g.init_args.lr", "nan"), 2,
         "error: --model.optimizer_g.init_args.lr nan is not a finite number; pass a finite float or Tensor"),
        (("--trainer.max_epochs", "three"), 2,
         "error: --trainer.max_epochs three has the wrong type: expected int or null; pass a value of that type"),
        (("--model.generator.init_args.width", "x"), 2,
         "error: --model.generator.init_args.width x has the wrong type: expected int; pass a value of that type"),
        (("--model.optimizer_g.init_args.lrr", "3"), 2,
         ("error: --model.optimizer_g.init_args.lrr is not an option of torch.optim.Adam (unknown key); did you mean "
         "--model.optimizer_g.init_args.lr? Fix or remove it (`python -m aigc_lightning fit --help` lists the options)")),
        (("--trainer.max_epochz", "3"), 2,
         ("error: --trainer.max_epochz is not an option (unknown key); did you mean --trainer.max_epochs? Fix or remove "
         "it (`python -m aigc_lightning fit --help` lists the options)")),
    ],
)  # fmt: skip
def test_bad_option_is_one_line(tmp_path, capsys, extra, status, line):
    assert cli_error(gan_args(tmp_path / "runs", *extra), capsys) == (status, line)
    assert not (tmp_path / "runs").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "yaml_text,line",
    [
        ("trainer:\n  max_epochs: three\n",
         "error: --trainer.max_epochs three has the wrong type: expected int or null; pass a value of that type"),
        ("model:\n  init_args:\n    n_critic: abc\n",
         "error: --model.init_args.n_critic abc has the wrong type: expected PositiveInt; pass a value of that type"),
        ("model:\n  init_args:\n    ema_decay: 1.5\n",
         "error: --model.init_args.ema_decay 1.5 is out of range (UnitIntervalBelowOne); pass a value with v>=0 and v<1"),
        ("trainer:\n  max_epochz: 3\n",
         ("error: --trainer.max_epochz is not an option (unknown key); did you mean --trainer.max_epochs? Fix or remove "
         "it (`python -m aigc_lightning fit --help` lists the options)")),
        ("model:\n  init_args:\n    n_critik: 2\n",
         ("error: --model.init_args.n_critik is not an option of aigc_lightning.modules.GAN (unknown key); did you mean "
         "--model.init_args.n_critic? Fix or remove it (`python -m aigc_lightning fit --help` lists the options)")),
        ("model:\n  init_args:\n    generator:\n      init_args:\n        widht: 3\n",
         ("error: --model.init_args.generator.init_args.widht is not an option of aigc_lightning.nets.Generator (unknown "
         "key); did you mean --model.init_args.generator.init_args.width? Fix or remove it (`python -m aigc_lightning "
         "fit --help` lists the options)")),
    ],
)  # fmt: skip
def test_bad_config_file_value_is_one_line(tmp_path, capsys, yaml_text, line):
    config = tmp_path / "override.yaml"
    config.write_text(yaml_text)
    assert cli_error(gan_args(tmp_path / "runs", "--config", str(config)), capsys) == (2, line)


def test_nan_learning_rate_from_yaml_is_refused(tmp_path, capsys):
    # YAML's .nan is a float, so it passes the parser; the optimizer's construction refuses it
    status, line = cli_error(gan_args(tmp_path, "--model.optimizer_g.init_args.lr", ".nan"), capsys)
    assert status == 1 and line.startswith("error: --model.optimizer_g") and "learning rate" in line


@pytest.mark.parametrize("where", ["proc", "under_a_file", "read_only"])
def test_output_folder_that_cannot_be_written(tmp_path, capsys, where):
    if where == "proc":
        folder = "/proc/aigc_lightning_runs"  # /proc refuses new entries, even to root
    elif where == "under_a_file":
        (tmp_path / "file").write_text("keep me")
        folder = str(tmp_path / "file" / "runs")
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        folder = str(tmp_path / "ro" / "runs")
        if os.access(tmp_path / "ro", os.W_OK):  # root ignores permission bits
            folder = "/sys/aigc_lightning_runs"  # sysfs refuses new entries, even to root
    status, line = cli_error(gan_args(folder), capsys)
    assert status == 1 and line.startswith(f"error: --trainer.default_root_dir {folder} cannot be created")
    assert line.endswith(("pass a folder you can write to", "pass a folder path"))


def test_parse_error_regexes_match_the_installed_jsonargparse():
    """cli_errors reads jsonargparse's error text; a jsonargparse that words it differently fails here."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--trainer.max_epochs", type=int | None)
    parser.add_argument("--every", type=PositiveInt | None)
    parser.add_argument("--net", type=torch.nn.Module | None)

    def line(*args: str) -> str:
        with pytest.raises(ArgumentError) as e:
            parser.parse_args(list(args))
        return parse_error_line(str(e.value), ["trainer.max_epochs", "every", "net"], "prog fit")

    net = ("--net", "aigc_lightning.nets.Generator")
    assert line("--trainer.max_epochs", "x") == (
        "--trainer.max_epochs x has the wrong type: expected int or null; pass a value of that type"
    )
    assert line("--every", "0") == "--every 0 is out of range (PositiveInt); pass a value with v>0"
    assert line("--every", "x").startswith("--every x has the wrong type: expected PositiveInt or null")
    assert line("--trainer.max_epochz", "3").startswith(
        "--trainer.max_epochz is not an option (unknown key); did you mean --trainer.max_epochs?"
    )
    assert line(*net, "--net.widthh", "3").startswith(
        "--net.widthh is not an option of aigc_lightning.nets.Generator (unknown key); did you mean --net.width?"
    )
    assert line(*net, "--net.width", "x").startswith("--net.width x has the wrong type: expected int")


@pytest.mark.parametrize(
    "net,size",
    [
        (nets.Generator, "width"), (nets.Generator, "latent_dim"), (nets.Generator, "channels"),
        (nets.Discriminator, "width"), (nets.MLPEncoder, "hidden_dim"), (nets.MLPDecoder, "latent_dim"),
        (nets.ConvEncoder, "width"), (nets.ConvDecoder, "latent_dim"), (nets.ConvClassifier, "num_classes"),
        (nets.ConvClassifier, "feature_dim"), (nets.TransformNet, "width"), (nets.StyleGAN2Generator, "n_mlp"),
        (nets.StyleGAN2Generator, "latent_dim"), (nets.StyleGAN2Discriminator, "channel_max"),
        (nets.StyleGAN2Discriminator, "mbstd_group_size"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("value", [0, -4])
def test_every_net_refuses_non_positive_sizes(net, size, value):
    with pytest.raises(ValueError, match=f"{net.__name__} {size} must be an integer >= 1, got {value}"):
        net(**{size: value})


def test_residual_blocks_may_be_zero_but_not_negative():
    assert len(nets.TransformNet(width=4, num_residual=0).residual) == 0
    with pytest.raises(SizeError, match="num_residual must be an integer >= 0, got -1"):
        nets.TransformNet(num_residual=-1)


@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "another_model"])
def test_export_of_a_bad_checkpoint_is_one_line(tmp_path, trained, kind):
    path = tmp_path / "bad.ckpt"
    if kind == "text":
        path.write_text("hello")
    elif kind == "truncated":
        path.write_bytes(trained.read_bytes()[:2000])
    elif kind == "another_model":
        path = trained  # a Lightning checkpoint, but of the toy module, not a StyleNetwork
    with pytest.raises(SystemExit) as stop:
        export_main([str(path), str(tmp_path / "style.pt"), "--format", "torchscript"])
    message = str(stop.value.code)
    assert message.startswith(f"error: checkpoint {path} ") and "\n" not in message, message
    expected = {"missing": "does not exist", "text": "not a readable checkpoint", "truncated": "not a readable"}
    assert expected.get(kind, "is not a StyleNetwork checkpoint") in message
    assert not (tmp_path / "style.pt").exists()


def test_an_older_config_gets_one_line_saying_what_to_write_instead(tmp_path, capsys):
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  class_path: aigc_lightning.modules.GAN\n  init_args:\n    r1_gamma: 0.1\n")
    for extra in (["--config", str(old)], ["--model.r1_gamma", "0.1"]):
        status, line = cli_error(gan_args(tmp_path, *extra), capsys)
        assert status == 2 and line.startswith("error: --model.r1_gamma is not a GAN option; write model.r1:")
        assert "aigc_lightning.gan_regularizers.R1" in line
