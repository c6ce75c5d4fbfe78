"""GAN sample quality: FID/KID/IS of the configs against plain-PyTorch loops and against each other."""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything

from aigc_lightning.callbacks import evaluate_images
from aigc_lightning.cli import AigcCLI
from aigc_lightning.datamodules import DigitsDataModule, ImageFolderDataModule
from aigc_lightning.modules import GAN, Classifier
from aigc_lightning.nets import ConvClassifier, DomainFeatures
from aigc_lightning.nets.dcgan import Discriminator, Generator
from aigc_lightning.seeds import randn_from_seeds
from bench.baselines.dcgan import example_loop
from bench.common import MNIST_PNGS, ROOT


def data(root: str) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(root=root, image_size=28, channels=1, batch_size=64, val_fraction=0.2, seed=0)
    dm.setup("fit")
    return dm


def stack(loader) -> torch.Tensor:
    return torch.cat([x for x, _ in loader])  # (N, 1, 28, 28) in [-1, 1]


def train_extractor(dm: ImageFolderDataModule, epochs: int, folder: str) -> tuple[str, float]:
    """configs/classifier/digits.yaml's model and optimizer at 28 px, trained on the 8,000; saved for DomainFeatures."""
    seed_everything(0)
    net = ConvClassifier(channels=1, image_size=28, num_classes=10, width=16, feature_dim=64)
    model = Classifier(net, lambda params: torch.optim.Adam(params, lr=3e-3), max_shift=2)
    trainer = Trainer(max_epochs=epochs, accelerator="cpu", default_root_dir=folder, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, dm)
    acc = trainer.validate(model, dm, verbose=False)[0]["val/acc"]
    path = f"{folder}/mnist28_classifier.pt"  # the format export_classifier writes
    init_args = {"channels": 1, "image_size": 28, "num_classes": 10, "width": 16, "feature_dim": 64}
    torch.save({"init_args": init_args, "state_dict": net.state_dict()}, path)
    return path, acc


def train_framework(
    root: str, batches: int, width: int, folder: str, extra: list[str] | None = None, seed: int = 0
) -> tuple[Generator, float]:
    """``configs/gan/dcgan_mnist.yaml`` on the folder for ``batches`` batches of 64; ``extra``: more CLI options."""
    extra = extra or []
    n_critic = next((int(v) for k, v in itertools.pairwise(extra) if k.endswith(".n_critic")), 1)
    args = [
        "--config", str(ROOT / "configs/gan/dcgan_mnist.yaml"),
        "--data", "aigc_lightning.datamodules.ImageFolderDataModule",
        "--data.root", root, "--data.image_size", "28", "--data.channels", "1",
        "--data.val_fraction", "0.2", "--data.batch_size", "64", "--data.seed", "0",
        "--trainer.max_steps", str((n_critic + 1) * batches),  # n_critic + 1 optimizer steps per GAN batch
        "--trainer.max_epochs", "-1", "--trainer.limit_val_batches", "0", "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", folder, "--trainer.logger", "false",
        "--model.init_args.generator.init_args.width", str(width),
        "--model.init_args.discriminator.init_args.width", str(width),
        "--seed_everything", str(seed),
        *extra,
    ]  # fmt: skip
    cli = AigcCLI(args=args, run=False)
    cli.datamodule.setup("fit")
    start = time.process_time()  # CPU time of this process (1 thread: its wall time on a quiet machine)
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli.model, time.process_time() - start


def config_lr(gan) -> float:
    """The generator learning rate of the framework's configured optimizer (an ``OptimizerCallable``)."""
    return gan.optimizer_g([torch.nn.Parameter(torch.zeros(1))]).param_groups[0]["lr"]


@torch.no_grad()
def plain_samples(g: Generator, n: int, seed: int = 0) -> torch.Tensor:
    """Eval-mode samples from the latents ``GAN.sample(n, seed)`` uses, so both sides are scored on the same z
    (different latent sets alone move FID by ~0.3 here)."""
    g.eval()
    z = randn_from_seeds(
        torch.arange(seed, seed + n), (g.latent_dim,), torch.device("cpu")
    )  # (n, latent_dim)
    return ((g(z) + 1) / 2).clamp(0, 1)


def train_plain(
    dm, batches: int, width: int, lr: float = 2e-4, seed: int = 0, cpu_seconds: float | None = None
):
    """``bench.baselines.dcgan.example_loop`` on the same nets, seed and data; (generator, CPU s, batches done)."""
    seed_everything(seed)
    g, d = Generator(100, 1, 28, width), Discriminator(1, 28, width, norm="batch")
    return example_loop(dm.train_dataloader, g, d, batches, lr, cpu_seconds)


def scores(v: dict) -> dict:
    return {"FID": round(v["fid"], 2), "KID": round(v["kid"], 3), "IS": round(v["is"], 2)}


def gan_fid(args) -> dict:
    """GAN quality on real MNIST: FID/KID/IS with MNIST domain features, framework GAN vs a plain-PyTorch DCGAN loop.

    Data: the 10,000 MNIST test PNGs through ``ImageFolderDataModule(image_size=28, channels=1, val_fraction=0.2,
    seed=0)``: 8,000 training images, 2,000 held out as the FID reference.
    1. Feature extractor: ``Classifier`` with a 28-px ``ConvClassifier`` (``configs/classifier/digits.yaml`` pointed at
       the folder) trained ``--classifier_epochs`` on the 8,000 (or ``--extractor``); its held-out accuracy is noted.
    2. framework: ``configs/gan/dcgan_mnist.yaml`` (nonsaturating DCGAN, Adam 4e-4/0.5, lazy R1, EMA generator) at
       ``--width``, batch 64, ``--batches`` batches, its own metric callback removed.
    3. plain: the same ``Generator`` / ``Discriminator``, seed, loss, data and batches in the PyTorch DCGAN example's
       loop (``bench.baselines.dcgan.example_loop``: Adam 2e-4 / 0.5, no EMA); then again until it has used the
       framework run's process CPU time (the equal-seconds comparison; 1 thread: CPU time = wall time on a quiet
       machine). Steps 2-3 repeat for each of ``--seeds``. ``--lr_ablation``: the plain loop at the config's lr.
    All are scored by ``evaluate_images`` on ``--num_samples`` samples (eval-mode generator, the same latents)
    against the held-out 2,000; "real" scores 2,000 training images the same way (the floor).

        python -m bench gan_fid [--root MNIST_PNGS] [--batches 600] [--extractor CKPT] [--seeds 0 1]
        python -m bench gan_fid --save_dir runs/gan_mnist     # keeps the first seed's framework checkpoint
    """
    torch.set_num_threads(args.threads)
    dm = data(args.root)
    held_out = (stack(dm.val_dataloader()) + 1) / 2  # (2000, 1, 28, 28) in [0, 1]
    rows, pairs, lr = [], [], None
    with tempfile.TemporaryDirectory() as folder:
        extractor, acc = args.extractor, float("nan")
        if extractor is None:
            extractor, acc = train_extractor(dm, args.classifier_epochs, folder)
        feature = DomainFeatures(extractor)

        def row(model: str, images: torch.Tensor, seconds: float, batches: int) -> dict:
            rows.append({"model": model, "batches": batches, "CPU s": round(seconds),
                         **scores(evaluate_images(held_out, images, feature=feature))})  # fmt: skip
            return rows[-1]

        row("real (2,000 training images)", (stack(dm.train_dataloader())[:2000] + 1) / 2, 0.0, 0)
        for seed in args.seeds:
            save = args.save_dir if args.save_dir and seed == args.seeds[0] else f"{folder}/seed{seed}"
            gan, fw_seconds = train_framework(args.root, args.batches, args.width, save, seed=seed)
            fw = row(f"framework GAN (EMA generator), seed {seed}", gan.sample(args.num_samples, seed=0),
                     fw_seconds, args.batches)  # fmt: skip
            # the raw (non-averaged) generator on the same latents: separates training from averaging
            row(f"framework GAN (raw generator), seed {seed}", plain_samples(gan.generator, args.num_samples),
                fw_seconds, args.batches)  # fmt: skip
            g, seconds, done = train_plain(dm, args.batches, args.width, seed=seed)
            same_batches = row(
                f"plain PyTorch DCGAN loop, seed {seed}", plain_samples(g, args.num_samples), seconds, done
            )
            g, seconds, done = train_plain(dm, args.batches, args.width, seed=seed, cpu_seconds=fw_seconds)
            same_time = row(f"plain loop, the framework's CPU seconds, seed {seed}", plain_samples(g, args.num_samples),
                            seconds, done)  # fmt: skip
            pairs.append({"seed": seed, "config FID": fw["FID"], "plain, equal batches": same_batches["FID"],
                          "ratio": round(fw["FID"] / same_batches["FID"], 3),
                          "plain, equal CPU s (batches; s)": f"{same_time['FID']} ({done}; {seconds:.0f} s)",
                          "ratio ": round(fw["FID"] / same_time["FID"], 3)})  # fmt: skip
            print(pairs[-1], flush=True)
            lr = config_lr(gan)
        if lr != 2e-4 and args.lr_ablation:  # what the lr buys vs what R1 and EMA buy
            g, seconds, done = train_plain(dm, args.batches, args.width, lr, seed=args.seeds[0])
            row(f"plain loop at the config's lr {lr:g}, seed {args.seeds[0]}", plain_samples(g, args.num_samples),
                seconds, done)  # fmt: skip
    notes = [f"MNIST PNGs, 28 px, {args.batches} batches of 64, width {args.width}; extractor held-out acc {acc:.4f}",
             "CPU s = process CPU time of the training (1 thread: its wall time on a quiet machine)"]  # fmt: skip
    return {"rows": rows, "equal batches and equal CPU seconds": pairs, "notes": notes}


def mnist_args(p: argparse.ArgumentParser, batches: int) -> None:
    p.add_argument("--root", default=MNIST_PNGS, help="the MNIST PNGs in class folders")
    p.add_argument("--batches", type=int, default=batches, help="GAN batches of 64")
    p.add_argument("--width", type=int, default=32, help="DCGAN width of G and D")
    p.add_argument("--num_samples", type=int, default=2000)


def gan_fid_args(p: argparse.ArgumentParser) -> None:
    mnist_args(p, 600)
    p.add_argument("--classifier_epochs", type=int, default=2)
    p.add_argument("--extractor", default=None, help="a Classifier .ckpt instead of training one")
    p.add_argument(
        "--save_dir", default=None, help="keep the first framework run here (checkpoints/last.ckpt)"
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1], help="training seeds, each a full comparison"
    )
    p.add_argument("--lr_ablation", action="store_true", help="add the plain loop at the config's lr")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time equals wall time)")


def gan_sweep(args) -> dict:
    """One variant of ``configs/gan/dcgan_mnist.yaml`` on real MNIST digits: the FID of its EMA and raw generators.

    Same data, width, batch, extractor and scored samples as ``gan_fid`` (its numbers compare with that case's rows);
    the options after ``--`` go to the CLI after the config and override it. The extractor is trained once
    (``configs/classifier/digits.yaml``'s classifier, 3 epochs, seed 0) and cached at ``--extractor``. This is how
    the learning rate and R1 of ``dcgan_mnist.yaml`` were chosen.

        python -m bench gan_sweep [--batches 1500] -- --model.init_args.loss aigc_lightning.gan_losses.Hinge
        python -m bench gan_sweep -- --seed_everything 1 --model.init_args.r1 null
    """
    torch.set_num_threads(1)
    dm = data(args.root)
    held_out = (stack(dm.val_dataloader()) + 1) / 2  # (2000, 1, 28, 28) in [0, 1]
    with tempfile.TemporaryDirectory() as folder:
        if not Path(args.extractor).is_file():
            path, acc = train_extractor(dm, 3, folder)
            shutil.copy(path, args.extractor)
            print(f"extractor held-out accuracy {acc:.4f}, saved to {args.extractor}")
        feature = DomainFeatures(args.extractor)
        gan, seconds = train_framework(args.root, args.batches, args.width, folder, args.cli_args)
        ema = evaluate_images(held_out, gan.sample(args.num_samples, seed=0), feature=feature)
        raw = evaluate_images(held_out, plain_samples(gan.generator, args.num_samples), feature=feature)
    variant = " ".join(args.cli_args) or "as configured"
    return {"rows": [{"variant": variant, "generator": name, "train s": round(seconds), **scores(m)}
                     for name, m in (("EMA", ema), ("raw", raw))]}  # fmt: skip


def gan_sweep_args(p: argparse.ArgumentParser) -> None:
    mnist_args(p, 1500)
    p.add_argument("--extractor", default="mnist28_classifier.pt", help="cached here after the first run")
    p.add_argument("cli_args", nargs="*", help="options of the variant, after --")


def digits_reference() -> tuple[DigitsDataModule, torch.Tensor]:
    dm = DigitsDataModule(image_size=32)
    dm.setup("fit")
    return dm, (torch.cat([b[0] for b in dm.val_dataloader()]) + 1) / 2  # the 180 held-out digits, as in fit


def gan_digits(args) -> dict:
    """FID / KID / IS of a trained digits GAN checkpoint against the 180 held-out digits (packaged digits-classifier
    features, offline), at ψ 1 and 0.7, plus the train-vs-held-out floor of the same metric.

        python -m bench gan_digits lightning_logs/version_0/checkpoints/last.ckpt
    """
    dm, real01 = digits_reference()
    model = GAN.load_from_checkpoint(args.checkpoint, map_location="cpu")
    rows = [{"images": f"GAN, {model.batches} batches, psi {psi}",
             **scores(evaluate_images(real01, model.sample(args.samples, seed=0, truncation_psi=psi)))}
            for psi in (1.0, 0.7)]  # fmt: skip
    train01 = (torch.cat([b[0] for b in dm.train_dataloader()])[: args.samples] + 1) / 2
    rows.append({"images": "real training digits (floor)", **scores(evaluate_images(real01, train01))})
    return {"rows": rows}


def gan_digits_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a digits GAN checkpoint (last.ckpt)")
    p.add_argument("--samples", type=int, default=1000)


def stylegan2_vs_dcgan(args) -> dict:
    """StyleGAN2 vs DCGAN on the scikit-learn digits at equal wall time: each shipped config trains ``--seconds``
    (Lightning's ``max_time``), then FID / KID / IS of 1,000 EMA samples against the 180 held-out digits with the
    packaged digits classifier's features (offline; not comparable with Inception FIDs). Both run without the
    in-training FID callback and validation; on a shared machine compare within one run.

        OMP_NUM_THREADS=1 python -m bench stylegan2_vs_dcgan [--seconds 300] [-- CLI options for both]
    """
    _, real01 = digits_reference()
    rows = []
    for config in ("dcgan_digits", "stylegan2_digits"):
        with tempfile.TemporaryDirectory() as root:
            start = time.perf_counter()
            cli = AigcCLI(args=[
                "fit", "--config", str(ROOT / f"configs/gan/{config}.yaml"), "--trainer.max_epochs", "100000",
                "--trainer.max_time", f"00:00:{args.seconds // 60:02d}:{args.seconds % 60:02d}",
                "--trainer.callbacks", "[]", "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar",
                "false", "--trainer.default_root_dir", root, *args.extra,
            ])  # fmt: skip
            wall, model = time.perf_counter() - start, cli.model
        images = model.batches * model.trainer.datamodule.batch_size
        rows.append({"config": config, "wall s": round(wall), "batches": model.batches, "images": images,
                     **scores(evaluate_images(real01, model.sample(args.samples, seed=0)))})  # fmt: skip
    return {"rows": rows}


def stylegan2_vs_dcgan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=int, default=300, help="training wall time per config (< 3600)")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("extra", nargs="*", help="CLI options for both configs, after --")
