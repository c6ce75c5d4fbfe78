"""StyleGAN2 vs DCGAN on the scikit-learn digits at equal wall time: each shipped config trains for the same
``--seconds`` (Lightning's ``max_time``), then FID / KID / IS of 1,000 EMA samples against the 180 held-out digits
with the packaged digits classifier's features (offline; not comparable with Inception FIDs).

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/stylegan2_vs_dcgan.py [--seconds 300] [-- CLI options for both]

Both run without the in-training FID callback and validation (their cost would differ); the wall time includes
what each model's training loop costs per batch, so on a shared machine run the two back to back and compare
within one run. Output: one row per config with batches, images seen, FID, KID, IS.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from aigc_lightning.callbacks import evaluate_images
from aigc_lightning.cli import AigcCLI
from aigc_lightning.datamodules import DigitsDataModule

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "gan"


def train(config: str, seconds: int, extra: list[str], root: str) -> tuple[object, float]:
    start = time.perf_counter()
    cli = AigcCLI(args=[
        "fit", "--config", str(CONFIGS / f"{config}.yaml"), "--trainer.max_epochs", "100000",
        "--trainer.max_time", f"00:00:{seconds // 60:02d}:{seconds % 60:02d}", "--trainer.callbacks", "[]",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", root, *extra,
    ])  # fmt: skip
    return cli.model, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300, help="training wall time per config (< 3600)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("extra", nargs="*", help="CLI options for both configs, after --")
    args = parser.parse_args()
    dm = DigitsDataModule(image_size=32)
    dm.setup("fit")
    real01 = (torch.cat([b[0] for b in dm.val_dataloader()]) + 1) / 2  # the 180 held-out digits
    rows = []
    for config in ("dcgan_digits", "stylegan2_digits"):
        with tempfile.TemporaryDirectory() as root:
            model, wall = train(config, args.seconds, args.extra, root)
        m = evaluate_images(real01, model.sample(args.samples, seed=0))
        batch = model.trainer.datamodule.batch_size
        rows.append((config, wall, model.batches, model.batches * batch, m["fid"], m["kid"], m["is"]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.seconds} s of training each")
    print(f"{'config':18s} {'wall s':>7s} {'batches':>8s} {'images':>8s} {'FID':>7s} {'KID':>7s} {'IS':>6s}")
    for config, wall, batches, images, fid, kid, inception in rows:
        print(f"{config:18s} {wall:7.0f} {batches:8d} {images:8d} {fid:7.2f} {kid:7.3f} {inception:6.2f}")


if __name__ == "__main__":
    main()
