"""FID / KID / IS of a trained digits GAN checkpoint against the held-out digits (packaged digits-classifier
features, offline), with and without truncation, plus the train-vs-val floor of the same metric.

    python bench/gan_quality_digits.py lightning_logs/version_0/checkpoints/last.ckpt
"""

from __future__ import annotations

import sys

import torch

from aigc_lightning.callbacks import evaluate_images
from aigc_lightning.datamodules import DigitsDataModule
from aigc_lightning.modules import GAN


def main(ckpt: str, n: int = 1000) -> None:
    dm = DigitsDataModule(image_size=32)
    dm.setup("fit")
    real01 = (torch.cat([b[0] for b in dm.val_dataloader()]) + 1) / 2  # the 180 validation digits, as in fit
    model = GAN.load_from_checkpoint(ckpt, map_location="cpu")
    print(f"{'images':34s} {'FID':>7s} {'KID':>7s} {'IS':>6s}")
    for psi in (1.0, 0.7):
        m = evaluate_images(real01, model.sample(n, seed=0, truncation_psi=psi))
        print(f"{f'GAN, {model.batches} batches, psi {psi}':34s} {m['fid']:7.2f} {m['kid']:7.3f} {m['is']:6.2f}")
    train01 = (torch.cat([b[0] for b in dm.train_dataloader()])[:n] + 1) / 2
    m = evaluate_images(real01, train01)
    print(f"{'real training digits (floor)':34s} {m['fid']:7.2f} {m['kid']:7.3f} {m['is']:6.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
