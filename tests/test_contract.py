"""The contract, run the way a user runs it: the README's commands in fresh interpreters, from the project's configs,
with torch's and Lightning's defaults.

For every model: ``fit`` a few batches → TensorBoard holds scalars and image grids, and the run folder holds
``config.yaml`` and ``checkpoints/last.ckpt`` → ``torch.load`` (``weights_only=True``) and
``Class.load_from_checkpoint`` load it in a fresh interpreter without a warning → ``predict`` writes exactly the
promised files → ``fit --ckpt_path last.ckpt`` continues the run. A new model joins by adding one ``Contract`` line
to ``MODELS``; the sizes it passes only shrink the networks, the rest of its config runs as written.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import CONFIGS, TINY_DCGAN, write_mnist, write_pngs

Files = Callable[[Path], list[str]]


def seeded(n: int) -> Files:
    """The files of ``predict --num_samples n``: ``000000.png`` … and ``grid.png``."""
    return lambda data: sorted([f"{i:06d}.png" for i in range(n)] + ["grid.png"])


def clips(n: int) -> Files:
    """The files of a video model's ``predict --num_samples n``: ``000000.mp4`` … and ``grid.mp4``."""
    return lambda data: sorted([f"{i:06d}.mp4" for i in range(n)] + ["grid.mp4"])


def stylised(data: Path) -> list[str]:
    """One ``<content name>.png`` per content image."""
    return sorted(f"{p.stem}.png" for p in (data / "content").iterdir())


@dataclass
class Contract:
    """One model's contract run.

    Args:
        config: the config under configs/, without ``.yaml``.
        module: the LightningModule's class name in ``aigc_lightning.modules``.
        shrink: options that make the networks tiny (and point the data at files the test writes, under
            ``{data}``); everything else comes from the config.
        steps: ``--trainer.max_steps`` of the first fit (optimizer steps); the resumed fit runs twice as many.
        predict: predict's options after ``--output_dir``; ``None``: the model has no predict.
        files: what predict must write, given the data folder.
        grids: whether fit must log image grids.
    """

    config: str
    module: str
    shrink: list[str]
    steps: int = 2
    predict: list[str] | None = field(default_factory=lambda: ["--num_samples", "3", "--seed", "5"])
    files: Files = field(default_factory=lambda: seeded(3))
    grids: bool = True

    def __str__(self) -> str:
        return self.config


TINY_MLP_VAE = ["--model.encoder.init_args.hidden_dim", "8", "--model.decoder.init_args.hidden_dim", "8"]
STYLE_INPUTS = ["--data.content", "{data}/content/photo.png", "--data.style", "{data}/style.png"]

# fmt: off
MODELS = [
    Contract("gan/dcgan_digits", "GAN", TINY_DCGAN, steps=4),
    Contract("gan/cdcgan_digits", "GAN", TINY_DCGAN, predict=["--num_samples", "3", "--seed", "5", "--class_label", "7"]),
    Contract("gan/dcgan_mnist", "GAN", [*TINY_DCGAN, "--data.root", "{data}", "--data.download", "false"], steps=4),
    Contract("gan/stylegan2_digits", "GAN", [
        "--model.generator.init_args.channel_max", "8", "--model.generator.init_args.latent_dim", "16",
        "--model.discriminator.init_args.channel_max", "8", "--model.mean_latent_samples", "64",
    ], steps=4),
    Contract("vae/vae_digits", "VAE", TINY_MLP_VAE),
    Contract("vae/vae_mlp_mnist", "VAE", [*TINY_MLP_VAE, "--data.root", "{data}", "--data.download", "false"]),
    Contract("style/gatys_offline", "StyleTransfer", [
        *STYLE_INPUTS, "--data.image_size", "32", "--model.optimizer.init_args.max_iter", "2",
        "--model.scale_steps", "[2]",
    ], steps=1, predict=STYLE_INPUTS, files=lambda data: ["photo.png"]),
    Contract("style/fast_offline", "StyleNetwork", [
        "--data.content", "{data}/content", "--data.style", "{data}/style.png", "--data.image_size", "32",
        "--data.style_size", "32", "--data.epoch_size", "4", "--data.batch_size", "2",
        "--model.network.init_args.width", "4", "--model.network.init_args.num_residual", "1",
    ], predict=["--data.content", "{data}/content"], files=stylised),
    Contract("video/mocogan_digits", "VideoGAN", [
        *TINY_DCGAN, "--model.discriminator.init_args.video_width", "4", "--data.num_clips", "32",
        "--data.batch_size", "8",
    ], steps=4, files=clips(3)),
    Contract("style/adain_offline", "AdaIN", [
        "--data.content", "{data}/content", "--data.style", "{data}/style.png", "--data.image_size", "32",
        "--data.style_size", "32", "--data.epoch_size", "4", "--data.batch_size", "2",
        "--model.decoder.init_args.width", "4",
    ], predict=["--data.content", "{data}/content", "--data.style", "{data}/style.png"], files=stylised),
    Contract("classifier/digits", "Classifier", ["--model.net.init_args.width", "4"], predict=None, grids=False),
]
# fmt: on

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Files a user would bring: MNIST in torchvision's layout, content photos and a style image."""
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, n_train=64, n_test=16)
    write_pngs(root / "content", n=2, size=(24, 32), channels=3)
    (root / "content/0.png").rename(root / "content/photo.png")
    write_pngs(root / "style", n=1, size=32, channels=3)
    (root / "style/0.png").rename(root / "style.png")
    return root


def run(*args: str) -> subprocess.CompletedProcess:
    """A fresh interpreter, as a user starts one; fails the test with its stderr when it exits non-zero."""
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(args)}\nexit {done.returncode}\n{done.stderr[-3000:]}"
    return done


def cli(command: str, contract: Contract, data: Path, *options: str) -> subprocess.CompletedProcess:
    config = CONFIGS / f"{contract.config}.yaml"
    return run(
        "-m", "aigc_lightning", command, "--config", str(config), *[o.format(data=data) for o in options]
    )


LOAD = textwrap.dedent(
    """
    import sys, torch
    from aigc_lightning import modules
    path = sys.argv[2]
    torch.load(path)  # torch's default: weights_only=True
    model = getattr(modules, sys.argv[1]).load_from_checkpoint(path)
    if hasattr(model, "sample"):
        x = model.sample(2, seed=0)
        assert x.shape[0] == 2 and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1, x.shape
    print("loaded", type(model).__name__)
    """
)


@pytest.mark.parametrize("contract", MODELS, ids=str)
def test_fit_load_predict_resume(contract: Contract, data: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    fit = [*QUIET, *contract.shrink, "--trainer.default_root_dir", str(root)]
    cli("fit", contract, data, *fit, "--trainer.max_steps", str(contract.steps))
    run_dir = root / "lightning_logs/version_0"
    ckpt = run_dir / "checkpoints/last.ckpt"
    assert (run_dir / "config.yaml").is_file() and ckpt.is_file()

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["scalars"], "no scalar in TensorBoard"
    assert bool(events.Tags()["images"]) == contract.grids, events.Tags()["images"]

    loaded = run("-c", LOAD, contract.module, str(ckpt))
    assert f"loaded {contract.module}" in loaded.stdout
    assert "warn" not in loaded.stderr.lower(), loaded.stderr

    if contract.predict is not None:
        out = tmp_path / "out"
        cli("predict", contract, data, "--ckpt_path", str(ckpt), "--output_dir", str(out), *contract.predict)
        assert sorted(p.name for p in out.iterdir()) == contract.files(data)

    cli("fit", contract, data, *fit, "--trainer.max_steps", str(2 * contract.steps), "--ckpt_path", str(ckpt))
    resumed = torch.load(root / "lightning_logs/version_1/checkpoints/last.ckpt", map_location="cpu")
    assert resumed["global_step"] == 2 * contract.steps
    assert (
        torch.load(ckpt, map_location="cpu")["global_step"] == contract.steps
    )  # the first run's file untouched
