"""The CLI end to end: fit on an image folder, run directory layout, shape link, predict, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_image

from aigc_lightning.cli import AigcCLI, main
from conftest import CONFIGS

CONFIG_FILES = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "poster")  # posters: test_poster


def tiny_args(png_folder: Path, out: Path) -> list[str]:
    return [
        "--model", "tiny_models.TinyGenerator",
        "--model.net", "tiny_models.TinyNet",
        "--data", "aigc_lightning.datamodules.ImageFolderDataModule",
        "--data.root", str(png_folder),
        "--data.image_size", "28",
        "--data.channels", "1",
        "--data.batch_size", "4",
        "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(out),
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip


def test_fit_on_image_folder_writes_run_directory(png_folder, tmp_path):
    cli = AigcCLI(args=["fit", *tiny_args(png_folder, tmp_path), "--trainer.max_epochs", "2"])
    # The data's shape reached the network through the CLI's link (TinyNet's defaults are 3 × 4 × 4).
    assert (cli.model.net.channels, cli.model.net.image_size) == (1, 28)
    assert cli.model.seen_shapes[0] == (4, 1, 28, 28)
    run = tmp_path / "lightning_logs" / "version_0"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert list(run.glob("events.out.tfevents.*"))
    assert "ImageFolderDataModule" in (run / "config.yaml").read_text()
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 4  # 2 epochs × 2 full batches of 11 images


def test_only_the_invoked_subcommand_gets_a_parser(png_folder, tmp_path, capfd):
    cli = AigcCLI(args=["fit", *tiny_args(png_folder, tmp_path), "--trainer.fast_dev_run", "1"])
    assert list(cli._subcommand_parsers) == ["fit"] and cli.trainer.global_step == 1
    capfd.readouterr()
    with pytest.raises(SystemExit):  # no subcommand: all four, listed by --help
        AigcCLI(args=["--help"])
    listed = capfd.readouterr().out
    assert all(name in listed for name in ("fit", "validate", "test", "predict"))
    with pytest.raises(SystemExit):  # an unknown one: the error lists every choice
        AigcCLI(args=["fitt"])
    assert "choose from 'fit', 'validate', 'test', 'predict'" in capfd.readouterr().err


def test_process_entry_points_run_main_then_freeze_the_heap(monkeypatch):
    """``python -m aigc_lightning`` and the ``aigc-lightning`` script go through ``cli.run``: ``main`` (which tests
    call in-process and must not freeze), then ``gc.freeze()`` for a fast interpreter exit, also after an error."""
    import gc
    import runpy
    from importlib.metadata import entry_points

    import aigc_lightning.cli as cli_module

    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(cli_module, "main", lambda: calls.append("main"))
    runpy.run_module("aigc_lightning", run_name="__main__")
    assert calls == ["main", "freeze"]

    def fails():
        calls.append("main")
        raise SystemExit("error: bad option")

    monkeypatch.setattr(cli_module, "main", fails)
    with pytest.raises(SystemExit):
        cli_module.run()
    assert calls[-2:] == ["main", "freeze"]
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["aigc-lightning"] == "aigc_lightning.cli:run"


def test_fast_dev_run(png_folder, tmp_path):
    cli = AigcCLI(args=["fit", *tiny_args(png_folder, tmp_path), "--trainer.fast_dev_run", "1"])
    assert cli.trainer.global_step == 1


def test_batch_limit_of_one_means_one_batch(png_folder, tmp_path):
    """jsonargparse parses ``limit_*_batches 1`` as 1.0 (= all batches); the CLI keeps the integer the user wrote,
    on the command line and in a --config file, and leaves ``1.0`` a fraction."""
    config = tmp_path / "limits.yaml"
    config.write_text("trainer:\n  limit_val_batches: 1\n  limit_test_batches: 1.0\n")
    args = [*tiny_args(png_folder, tmp_path), "--config", str(config), "--trainer.limit_train_batches", "1"]
    trainer = AigcCLI(args=args, run=False).trainer
    assert type(trainer.limit_train_batches) is int and trainer.limit_train_batches == 1
    assert type(trainer.limit_val_batches) is int and trainer.limit_val_batches == 1
    assert type(trainer.limit_test_batches) is float and trainer.limit_test_batches == 1.0
    trainer = AigcCLI(args=[*args, "--trainer.limit_train_batches=1.0"], run=False).trainer
    assert type(trainer.limit_train_batches) is float


def test_broken_yaml_config_is_a_parser_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [1, 2\n")  # unclosed list
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(bad)])
    assert e.value.code != 0 and "Problems parsing config" in capsys.readouterr().err


def test_predict_seeded_files_and_grid(png_folder, tmp_path):
    AigcCLI(args=["fit", *tiny_args(png_folder, tmp_path), "--trainer.max_steps", "2"])
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    base = ["predict", *tiny_args(png_folder, tmp_path), "--ckpt_path", str(ckpt)]
    cli = AigcCLI(args=[*base, "--output_dir", str(out_a), "--num_samples", "5", "--seed", "10"])
    AigcCLI(args=[*base, "--output_dir", str(out_b), "--num_samples", "3", "--seed", "12"])
    assert sorted(p.name for p in out_a.iterdir()) == [f"{i:06d}.png" for i in range(5)] + ["grid.png"]
    # predict leaves the training run alone: no new version folder, its config.yaml still the fit config
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]
    assert "output_dir" not in (tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text()
    # Sample i comes from seed S + i: seed 12 is sample 2 of the first run and sample 0 of the second.
    assert (out_a / "000002.png").read_bytes() == (out_b / "000000.png").read_bytes()
    # ... and is what the Python API gives for the same seed.
    expected = cli.model.sample(5, seed=10)
    written = decode_image(str(out_a / "000004.png")).float() / 255
    assert written.shape == (1, 28, 28)
    assert torch.allclose(written, expected[4], atol=1 / 255)


def test_missing_root_is_one_message(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["fit", *tiny_args(tmp_path / "absent", tmp_path), "--trainer.max_steps", "1"])
    assert "error:" in str(e.value.code) and str(tmp_path / "absent") in str(e.value.code)


def test_missing_root_from_the_shell_is_one_line_without_traceback(tmp_path):
    args = ["fit", *tiny_args(tmp_path / "absent", tmp_path), "--trainer.max_steps", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "aigc_lightning", *args],
        capture_output=True, text=True, cwd=Path(__file__).parent, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(tmp_path / "absent") in errors[0]


def test_unknown_config_key_is_a_parser_error(png_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", *tiny_args(png_folder, tmp_path), "--data.no_such_option", "1"])
    assert e.value.code == 2
    assert "no_such_option" in capsys.readouterr().err


def test_output_dir_that_is_a_file(png_folder, tmp_path):
    (tmp_path / "file.txt").write_text("keep me")
    with pytest.raises(SystemExit) as e:
        main(["predict", *tiny_args(png_folder, tmp_path), "--output_dir", str(tmp_path / "file.txt")])
    assert "is a file" in str(e.value.code)
    assert (tmp_path / "file.txt").read_text() == "keep me"


def test_there_are_configs():
    assert len(CONFIG_FILES) >= 9, CONFIG_FILES


@pytest.mark.parametrize("config", CONFIG_FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_prints(config, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(config), "--print_config"])
    assert e.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "model:" in printed and "class_path" in printed and "trainer:" in printed


@pytest.mark.parametrize(
    "extra,status",
    [
        (("--trainer.max_epochs", "-5"), 1),  # refused by the CLI's own check
        (("--model.init_args.n_critik", "2"), 2),  # refused by the parser
        (("--trainer.default_root_dir", "/proc/aigc_lightning_runs"), 1),  # an unwritable output folder
    ],
)
def test_bad_input_from_the_shell_is_exactly_one_error_line(tmp_path, extra, status):
    config = CONFIGS / "gan" / "dcgan_digits.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "aigc_lightning", "fit", "--config", str(config),
         "--trainer.default_root_dir", str(tmp_path / "runs"), *extra],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_export_file_from_the_shell_is_exactly_one_error_line(tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    proc = subprocess.run(
        [sys.executable, "-m", "aigc_lightning.export", str(tmp_path / "notes.ckpt"), str(tmp_path / "out.onnx")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: checkpoint {tmp_path / 'notes.ckpt'} is not a readable")
