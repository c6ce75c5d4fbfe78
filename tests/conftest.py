"""Shared test helpers: the repository paths, a writer of small PNG folders and of MNIST in torchvision's layout.

Test modules import the constants and ``write_pngs`` (``from conftest import ROOT, write_pngs``): pytest puts this
folder on ``sys.path``, as it does for ``reliability_toy`` and ``tiny_models``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent  # the repository: configs/, src/, tests/
CONFIGS = ROOT / "configs"


def write_pngs(
    folder: Path,
    n: int = 6,
    size: int | tuple[int, int] = 12,
    channels: int = 1,
    classes: int = 0,
    random: bool = True,
) -> Path:
    """Write ``n`` PNGs ``0.png`` … into ``folder`` (flat, or round-robin into ``classes`` sub-folders
    ``class_0`` …) and return ``folder``. Pixels are seeded uniform noise, or with ``random=False`` a flat grey
    of 20·i for image i (distinct, known values). ``size`` is an int (square) or ``(height, width)``."""
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(0)
    shape = (h, w) if channels == 1 else (h, w, 3)
    for i in range(n):
        target = folder / f"class_{i % classes}" if classes else folder
        target.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, shape, dtype=np.uint8) if random else np.full(shape, 20 * i, np.uint8)
        Image.fromarray(pixels).save(target / f"{i}.png")
    return folder


def write_idx(path, array: np.ndarray) -> None:
    """IDX file as in http://yann.lecun.com/exdb/mnist/: magic (0, 0, uint8 code 8, ndim), big-endian dims."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 8, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist(root, name: str = "MNIST", n_train: int = 40, n_test: int = 12) -> None:
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))

def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child ``python`` that imports this folder's modules (callbacks named by ``class_path``
    in a command line) — ``os.environ`` with ``tests/`` on ``PYTHONPATH`` — plus ``extra``."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **extra}

# Options that shrink configs/gan/dcgan_digits.yaml's networks and its set-up estimates to test size.
TINY_DCGAN = ["--model.generator.init_args.width", "4", "--model.discriminator.init_args.width", "4",
              "--model.mean_latent_samples", "64", "--model.bn_stat_batches", "1"]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_dcgan_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a 2-batch tiny DCGAN digits fit through the CLI; its run's ``config.yaml`` is two folders up
    (``lightning_logs/version_0/``). Shared by the tests that only read it."""
    from aigc_lightning.cli import main

    root = tmp_path_factory.mktemp("tiny_dcgan")
    main([
        "fit", "--config", str(CONFIGS / "gan/dcgan_digits.yaml"), *TINY_DCGAN, "--trainer.max_steps", "4",
        "--trainer.limit_val_batches", "0", "--trainer.callbacks", "[]", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root), "--images.log_images_every_n_batches", "0",
    ])  # fmt: skip
    (ckpt,) = root.rglob("last.ckpt")
    return ckpt

def gan_trainer(batches: int, **kwargs):
    """A bare CPU Trainer for ``batches`` GAN batches (``max_steps`` counts optimizer steps: two per batch with
    ``n_critic=1``); no logger, checkpoints, bar or summary unless ``kwargs`` say so."""
    from lightning.pytorch import Trainer

    defaults = {
        "accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
        "enable_model_summary": False, "max_steps": 2 * batches, "num_sanity_val_steps": 0,
    }  # fmt: skip
    return Trainer(**{**defaults, **kwargs})


def flat(module: torch.nn.Module) -> torch.Tensor:
    """All parameters of ``module`` as one detached vector (to compare weights before and after)."""
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


@pytest.fixture()
def one_thread():
    """Torch on one thread during the test: several test processes share 2 cores, and two threads each are ~10x
    slower than one under that load."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def png_folder(tmp_path: Path) -> Path:
    """Three class folders of twelve 28-px grey PNGs in distinct flat greys, like MNIST's PNG dumps."""
    return write_pngs(tmp_path / "pngs", n=12, size=28, classes=3, random=False)
