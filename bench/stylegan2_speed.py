"""Training throughput (images/s) of the StyleGAN2 GAN module at 32 and 64 px, with every regulariser of the
configs on (style mixing 0.9, path length every 4, lazy R1 every 16), against DCGAN at the same sizes.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/stylegan2_speed.py [--batches 20] [--batch_size 32]

Nets as configs/gan/stylegan2_digits.yaml (channel_max 32, latent 64, 2 mapping layers) and dcgan_digits.yaml
(width 32, z 100); one channel; random images; the first 4 batches are warm-up and not timed. On a shared machine
the numbers move with its load: compare rows of one run.
"""

from __future__ import annotations

import argparse
import time

import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader, TensorDataset

from aigc_lightning.modules import GAN
from aigc_lightning.nets import Discriminator, Generator, StyleGAN2Discriminator, StyleGAN2Generator

WARMUP = 4


class Timer(Callback):
    """Wall time of the training batches after the warm-up."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == WARMUP:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def adam(params):
    return torch.optim.Adam(params, lr=0.0025, betas=(0.0, 0.99))


def model(kind: str, size: int) -> GAN:
    torch.manual_seed(0)
    if kind == "dcgan":
        g, d = Generator(latent_dim=100, channels=1, image_size=size, width=32), Discriminator(1, size, width=32)
        return GAN(g, d, bn_stat_batches=0, mean_latent_samples=64)
    g = StyleGAN2Generator(image_size=size, channels=1, latent_dim=64, n_mlp=2, channel_max=32)
    d = StyleGAN2Discriminator(image_size=size, channels=1, channel_max=32)
    return GAN(g, d, adam, adam, r1_gamma=0.05, r1_every=16, style_mixing_prob=0.9, pl_weight=2.0, pl_every=4,
               lazy_reg_correction=True)  # fmt: skip


def images_per_second(kind: str, size: int, batches: int, batch_size: int) -> float:
    n = (batches + WARMUP) * batch_size
    x = torch.rand(n, 1, size, size) * 2 - 1
    timer = Timer()
    trainer = Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, max_epochs=1, callbacks=[timer],
    )  # fmt: skip
    trainer.fit(model(kind, size), DataLoader(TensorDataset(x, torch.zeros(n)), batch_size=batch_size))
    return batches * batch_size / timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch_size}")
    print(f"{'model':10s} {'px':>4s} {'img/s':>8s}")
    for size in (32, 64):
        for kind in ("stylegan2", "dcgan"):
            print(f"{kind:10s} {size:4d} {images_per_second(kind, size, args.batches, args.batch_size):8.1f}")


if __name__ == "__main__":
    main()
