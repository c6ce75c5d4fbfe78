"""Data loading: in-memory uint8 tensor (batched indexing) vs per-item PIL decoding, on real MNIST PNGs.

    python bench/data_loading.py [--root ../shared/data/mnist_t10k_png] [--epochs 3]

Reference: torchvision's ``ImageFolder`` + transforms v2 + the default collate, what a plain-PyTorch script writes.
Prints a table (setup seconds, seconds per epoch, images/s, ratio to the reference) and one summary line.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

from aigc_lightning.datamodules import ImageFolderDataModule


def epoch_seconds(loader, epochs: int) -> float:
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, _ in loader:
            x.sum()  # touch the batch
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared/data/mnist_t10k_png"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []

    start = time.perf_counter()
    reference = datasets.ImageFolder(
        args.root,
        transform=v2.Compose([v2.Grayscale(), v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5], [0.5])]),
    )
    loader = DataLoader(reference, batch_size=args.batch_size, shuffle=True)
    rows.append(("torchvision ImageFolder (reference)", time.perf_counter() - start, epoch_seconds(loader, args.epochs)))

    for name, limit in (("ImageFolderDataModule, per item", 0), ("ImageFolderDataModule, in memory", 10**9)):
        start = time.perf_counter()
        dm = ImageFolderDataModule(args.root, image_size=28, channels=1, batch_size=args.batch_size,
                                   val_fraction=0, in_memory_limit=limit)
        dm.setup("fit")
        setup = time.perf_counter() - start
        rows.append((name, setup, epoch_seconds(dm.train_dataloader(), args.epochs)))

    n = len(reference)
    ref_epoch = rows[0][2]
    print(f"{n} images of {args.root}, batch {args.batch_size}, 1 thread, median of {args.epochs} epochs")
    print(f"{'loader':40s} {'setup s':>8s} {'epoch s':>8s} {'images/s':>10s} {'speed-up':>9s}")
    for name, setup, epoch in rows:
        print(f"{name:40s} {setup:8.2f} {epoch:8.3f} {n / epoch:10.0f} {ref_epoch / epoch:8.1f}x")
    print(f"in-memory/reference epoch speed-up: {ref_epoch / rows[2][2]:.1f}x")


if __name__ == "__main__":
    main()
