"""Conditional GAN quality on real MNIST: FID and class accuracy of ``cdcgan_mnist.yaml`` against a plain loop."""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from lightning.pytorch import seed_everything

from aigc_lightning.callbacks import evaluate_images
from aigc_lightning.callbacks.class_metrics import class_accuracy
from aigc_lightning.cli import AigcCLI
from aigc_lightning.nets import DomainFeatures
from aigc_lightning.nets.dcgan import Discriminator, Generator
from aigc_lightning.seeds import randn_from_seeds
from bench.baselines.cdcgan import conditional_example_loop
from bench.common import MNIST_PNGS, ROOT
from bench.gan_quality import data, stack, train_extractor


def train_framework(root: str, batches: int, width: int, folder: str, seed: int) -> tuple[object, float]:
    """``configs/gan/cdcgan_mnist.yaml`` on the class folders for ``batches`` batches of 64, no metric callbacks."""
    args = [
        "--config", str(ROOT / "configs/gan/cdcgan_mnist.yaml"),
        "--data", "aigc_lightning.datamodules.ImageFolderDataModule",
        "--data.root", root, "--data.image_size", "28", "--data.channels", "1",
        "--data.val_fraction", "0.2", "--data.batch_size", "64", "--data.seed", "0",
        "--trainer.max_steps", str(2 * batches), "--trainer.max_epochs", "-1",  # 2 optimizer steps per batch
        "--trainer.limit_val_batches", "0", "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", folder, "--trainer.logger", "false",
        "--model.init_args.generator.init_args.width", str(width),
        "--model.init_args.discriminator.init_args.width", str(width),
        "--seed_everything", str(seed),
    ]  # fmt: skip
    cli = AigcCLI(args=args, run=False)
    cli.datamodule.setup("fit")
    start = time.process_time()
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli.model, time.process_time() - start


@torch.no_grad()
def plain_samples(g: Generator, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode samples from the latents and labels ``GAN.sample(n, seed)`` uses (class i mod 10)."""
    g.eval()
    z = randn_from_seeds(torch.arange(seed, seed + n), (g.latent_dim,), torch.device("cpu"))  # (n, latent_dim)
    y = torch.arange(n) % g.num_classes
    return ((g(z, y) + 1) / 2).clamp(0, 1), y


def cdcgan_fid(args) -> dict:
    """FID and class accuracy on real MNIST: ``configs/gan/cdcgan_mnist.yaml`` vs a plain conditional DCGAN loop.

    Data as ``gan_fid``: the 10,000 MNIST test PNGs in class folders, 8,000 for training, 2,000 held out as the FID
    reference. A 28-px classifier trained ``--classifier_epochs`` on the 8,000 (its held-out accuracy is noted)
    gives both the FID features and the class accuracy: the share of samples of class k it reads as k (image i of
    class i mod 10, ``--num_samples`` of them). The framework trains ``--batches`` batches of 64 at ``--width``; the
    plain loop (``bench.baselines.cdcgan``: the same nets, seed, data and batches, the pytorch-examples optimiser,
    no EMA, no R1) trains the same number of batches, then again for the framework's CPU seconds.

        OMP_NUM_THREADS=1 python -m bench cdcgan_fid [--batches 600] [--seeds 0] [--equal_time 0]
    """
    torch.set_num_threads(1)
    dm = data(args.root)
    held_out = (stack(dm.val_dataloader()) + 1) / 2  # (2000, 1, 28, 28) in [0, 1]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        extractor, acc = args.extractor, float("nan")
        if extractor is None:
            extractor, acc = train_extractor(dm, args.classifier_epochs, folder)
        feature = DomainFeatures(extractor)

        def row(model: str, images: torch.Tensor, labels: torch.Tensor, seconds: float, batches: int) -> None:
            hits, count = class_accuracy(feature, images, labels, 10)
            fid = evaluate_images(held_out, images, feature=feature)["fid"]
            rows.append({"model": model, "batches": batches, "CPU s": round(seconds), "FID": round(fid, 2),
                         "class acc": round(float((hits / count).mean()), 4),
                         "worst class acc": round(float((hits / count).min()), 4)})  # fmt: skip
            print(rows[-1], flush=True)

        for seed in args.seeds:
            gan, fw_seconds = train_framework(args.root, args.batches, args.width, f"{folder}/seed{seed}", seed)
            y = torch.arange(args.num_samples) % 10
            row(f"cdcgan_mnist.yaml (EMA generator), seed {seed}", gan.sample(args.num_samples, seed=0), y,
                fw_seconds, args.batches)  # fmt: skip
            for budget in (None, fw_seconds) if args.equal_time else (None,):
                seed_everything(seed)
                g = Generator(100, 1, 28, args.width, num_classes=10, embed_dim=32)
                d = Discriminator(1, 28, args.width, norm="batch", num_classes=10)
                g, seconds, done = conditional_example_loop(dm.train_dataloader, g, d, args.batches, cpu_seconds=budget)
                name = "plain conditional DCGAN loop" + (", the framework's CPU seconds" if budget else "")
                row(f"{name}, seed {seed}", *plain_samples(g, args.num_samples), seconds, done)
    notes = [f"MNIST PNGs, 28 px, {args.batches} batches of 64, width {args.width}; classifier held-out acc {acc:.4f}",
             "CPU s = process CPU time of the training (1 thread: its wall time on a quiet machine)"]  # fmt: skip
    return {"rows": rows, "notes": notes}


def cdcgan_fid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=MNIST_PNGS, help="the MNIST PNGs in class folders 0 … 9")
    p.add_argument("--batches", type=int, default=600, help="GAN batches of 64")
    p.add_argument("--width", type=int, default=32, help="DCGAN width of G and D")
    p.add_argument("--num_samples", type=int, default=2000)
    p.add_argument("--classifier_epochs", type=int, default=2)
    p.add_argument("--extractor", default=None, help="a classifier .pt / .ckpt instead of training one")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds, each a full comparison")
    p.add_argument("--equal_time", type=int, default=1, help="0: skip the plain loop at the framework's CPU seconds")
