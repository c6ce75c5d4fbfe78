"""Where the VAE digits job's extra time goes: ``fit`` in this process, one convenience off at a time.

``bench/user_overhead.py`` times whole processes, which a loaded machine makes noisy at the ±5 % that separates these
items. This times only ``Trainer.fit`` (and the plain loop's training), in one process, as the main thread's CPU
time (``time.thread_time``: not inflated by other processes), the variants taking turns, median of ``--repeats``:

- ``plain``: ``bench/plain_vae_digits.py``'s loop (torch.bernoulli, torch's default Adam kernel);
- ``as shipped``: ``configs/vae/vae_digits.yaml``;
- ``before``: the config and kernels before the cuts of docs/benchmarks.md's second round (``torch.bernoulli``
  binarisation, the NVML probe on every optimizer step, Lightning's per-batch progress bar, scalars every 10
  batches, validation every 5th epoch, grids every 125 batches, unfused Adam);
- ``no validation``, ``no grids``, ``no logger``, ``no progress bar``: the shipped config with one thing off;
- ``bare``: everything off (Lightning's loop alone).

    OMP_NUM_THREADS=1 python bench/vae_overhead_ablation.py --epochs 30 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from aigc_lightning.cli import AigcCLI
from aigc_lightning.datamodules import datasets
from aigc_lightning.nets import MLPDecoder, MLPEncoder
from plain_dcgan_digits import digits
from user_overhead import BARE

CONFIG = ROOT / "configs/vae/vae_digits.yaml"
BEFORE = ["--trainer.log_every_n_steps", "10", "--trainer.check_val_every_n_epoch", "5",
          "--images.log_images_every_n_batches", "125", "--model.optimizer.init_args.fused", "false",
          "--trainer.callbacks", '[{"class_path": "lightning.pytorch.callbacks.TQDMProgressBar"}]']  # fmt: skip
VARIANTS = {
    "as shipped": [],
    "before": BEFORE,
    "no validation": ["--trainer.limit_val_batches", "0"],
    "no grids": ["--images.log_images_every_n_batches", "0"],
    "no logger": ["--trainer.logger", "false"],
    "no progress bar": ["--trainer.enable_progress_bar", "false"],
    "bare": BARE,
}


def fit_seconds(extra: list[str], epochs: int, before: bool) -> float:
    """Main-thread CPU seconds of ``Trainer.fit`` of the config with ``extra`` overrides."""
    binarized = datasets.binarized
    if before:  # the kernels and the NVML probe of before the cuts
        datasets.binarized = lambda x01, generator=None: torch.bernoulli(x01, generator=generator)
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    try:
        cli = AigcCLI(args=["--config", str(CONFIG), "--trainer.default_root_dir", tempfile.mkdtemp(),
                            "--trainer.max_epochs", str(epochs), *extra], run=False)  # fmt: skip
        if before:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # AigcCLI switched it off on a driverless machine
        start = time.thread_time()
        cli.trainer.fit(cli.model, cli.datamodule)
        return time.thread_time() - start
    finally:
        datasets.binarized = binarized


def plain_seconds(epochs: int, batch_size: int = 64) -> float:
    """Main-thread CPU seconds of plain_vae_digits.py's training loop (no warm-up/schedule: a second of work less)."""
    torch.manual_seed(0)
    x01 = (digits(28) + 1) / 2
    order = torch.randperm(len(x01), generator=torch.Generator().manual_seed(0))
    train = x01[order[round(len(x01) * 0.1) :]]
    enc = MLPEncoder(channels=1, image_size=28, hidden_dim=400, latent_dim=20)
    dec = MLPDecoder(channels=1, image_size=28, hidden_dim=400, latent_dim=20)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
    start = time.thread_time()
    for _ in range(epochs):
        perm = torch.randperm(len(train))
        for i in range(len(train) // batch_size):
            x = torch.bernoulli(train[perm[i * batch_size : (i + 1) * batch_size]])
            mu, logvar = enc(x)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            recon = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").flatten(1).sum(1)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            opt.zero_grad(set_to_none=True)
            (recon + kl).mean().backward()
            opt.step()
    return time.thread_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    times: dict[str, list[float]] = {"plain": [], **{name: [] for name in VARIANTS}}
    for _ in range(args.repeats):
        times["plain"].append(plain_seconds(args.epochs))
        for name, extra in VARIANTS.items():
            times[name].append(fit_seconds(extra, args.epochs, before=name == "before"))
        print(" ".join(f"{name}={t[-1]:.2f}" for name, t in times.items()), flush=True)
    plain = statistics.median(times["plain"])
    print(f"\nVAE digits, {args.epochs} epochs, main-thread CPU seconds of fit (median of {args.repeats}), load "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")  # fmt: skip
    print("| variant | CPU s | × plain |\n|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.2f} | {statistics.median(t) / plain:.3f} |")


if __name__ == "__main__":
    main()
