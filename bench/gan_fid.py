"""GAN quality on real MNIST: FID/KID/IS with MNIST domain features, framework GAN vs a plain-PyTorch DCGAN loop.

    python bench/gan_fid.py [--root ../shared/data/mnist_t10k_png] [--batches 600] [--extractor CKPT]
    python bench/gan_fid.py --save_dir runs/gan_mnist     # keeps the framework's checkpoint, then e.g.
    python -m aigc_lightning predict --config runs/gan_mnist/config.yaml \
        --ckpt_path runs/gan_mnist/checkpoints/last.ckpt --output_dir samples --num_samples 64

Data: the 10,000 MNIST test PNGs through ``ImageFolderDataModule(image_size=28, channels=1, val_fraction=0.2,
seed=0)``: 8,000 training images, 2,000 held out as the FID reference.

1. Feature extractor: ``aigc_lightning.modules.Classifier`` with a 28-px ``ConvClassifier`` — exactly
   ``configs/classifier/digits.yaml`` pointed at the folder — trained for ``--classifier_epochs`` on the 8,000
   (or ``--extractor`` a ``Classifier`` checkpoint). Its held-out accuracy is printed.
2. framework: ``configs/gan/dcgan_mnist.yaml`` (nonsaturating DCGAN, Adam 4e-4/0.5, lazy R1, EMA generator) at
   ``--width``, batch 64, ``--batches`` batches, data pointed at the folder, its own metric callback removed.
3. plain: the same ``Generator`` / ``Discriminator`` classes, same seed, loss, data and number of batches in a
   hand-written loop (D step on detached fakes, then G step), Adam 2e-4 / 0.5, no EMA — the PyTorch DCGAN example.
   It runs again until it has used the framework run's process CPU time (the equal-seconds comparison; one thread by
   default, so CPU time equals wall time on a quiet machine). Steps 2-3 repeat for each of ``--seeds`` (0 1), and a
   table per seed prints both FID ratios. ``--lr_ablation``: the plain loop once more at the config's learning rate.

Both are scored by ``aigc_lightning.callbacks.evaluate_images`` on ``--num_samples`` samples (eval-mode generator)
against the held-out 2,000; "real" scores 2,000 training images the same way (the floor).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer, seed_everything

from aigc_lightning.callbacks import evaluate_images
from aigc_lightning.cli import AigcCLI
from aigc_lightning.datamodules import ImageFolderDataModule
from aigc_lightning.modules import Classifier
from aigc_lightning.nets import ConvClassifier, DomainFeatures
from aigc_lightning.nets.dcgan import Discriminator, Generator
from aigc_lightning.seeds import randn_from_seeds

REPO = Path(__file__).resolve().parents[1]


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
        "--config", str(REPO / "configs/gan/dcgan_mnist.yaml"),
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


def train_plain(
    dm: ImageFolderDataModule,
    batches: int,
    width: int,
    lr: float = 2e-4,
    seed: int = 0,
    cpu_seconds: float | None = None,
) -> tuple[Generator, float, int]:
    """The pytorch-examples loop for ``batches`` batches, or (``cpu_seconds``) until this process has used that much
    CPU time; returns ``(generator, CPU seconds, batches done)``."""
    seed_everything(seed)
    g, d = Generator(100, 1, 28, width), Discriminator(1, 28, width, norm="batch")
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
    start, done = time.process_time(), 0
    while True:
        for real, _ in dm.train_dataloader():
            z = torch.randn(real.shape[0], 100)
            loss_d = (F.softplus(-d(real)) + F.softplus(d(g(z).detach()))).mean()
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            loss_g = F.softplus(-d(g(torch.randn(real.shape[0], 100)))).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            done += 1
            used = time.process_time() - start
            if (used >= cpu_seconds) if cpu_seconds is not None else done >= batches:
                return g, used, done


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default=str(REPO.parent / "shared/data/mnist_t10k_png"))
    parser.add_argument("--batches", type=int, default=600, help="GAN batches of 64 for both")
    parser.add_argument("--width", type=int, default=32, help="DCGAN width of G and D for both")
    parser.add_argument("--num_samples", type=int, default=2000)
    parser.add_argument("--classifier_epochs", type=int, default=2)
    parser.add_argument("--extractor", default=None, help="a Classifier .ckpt instead of training one")
    parser.add_argument(
        "--save_dir", default=None, help="keep the framework run here (checkpoints/last.ckpt)"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1], help="training seeds, each a full comparison"
    )
    parser.add_argument("--lr_ablation", action="store_true", help="add the plain loop at the config's lr")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time equals wall time)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    dm = data(args.root)
    held_out = (stack(dm.val_dataloader()) + 1) / 2  # (2000, 1, 28, 28) in [0, 1]
    with tempfile.TemporaryDirectory() as folder:
        extractor, acc = args.extractor, float("nan")
        if extractor is None:
            extractor, acc = train_extractor(dm, args.classifier_epochs, folder)
        feature = DomainFeatures(extractor)

        def score(images: torch.Tensor) -> dict[str, float]:
            return evaluate_images(held_out, images, feature=feature)

        rows = {
            "real (2,000 training images)": (score((stack(dm.train_dataloader())[:2000] + 1) / 2), 0.0, 0)
        }
        lr, pairs = None, []
        for seed in args.seeds:
            # --save_dir keeps the first seed's framework run (checkpoints/last.ckpt) for ``predict``
            save = args.save_dir if args.save_dir and seed == args.seeds[0] else f"{folder}/seed{seed}"
            gan, fw_seconds = train_framework(args.root, args.batches, args.width, save, seed=seed)
            fw = score(gan.sample(args.num_samples, seed=0))
            rows[f"framework GAN (EMA generator), seed {seed}"] = (fw, fw_seconds, args.batches)
            # The framework's raw (non-averaged) generator on the same latents: separates training from averaging.
            raw = score(plain_samples(gan.generator, args.num_samples))
            rows[f"framework GAN (raw generator), seed {seed}"] = (raw, fw_seconds, args.batches)
            plain, seconds, done = train_plain(dm, args.batches, args.width, seed=seed)
            same_batches = score(plain_samples(plain, args.num_samples))
            rows[f"plain PyTorch DCGAN loop, seed {seed}"] = (same_batches, seconds, done)
            # The plain loop given the framework run's CPU time (more batches when the recipe costs more per batch).
            plain, seconds, done = train_plain(
                dm, args.batches, args.width, seed=seed, cpu_seconds=fw_seconds
            )
            same_time = score(plain_samples(plain, args.num_samples))
            rows[f"plain loop, the framework's CPU seconds, seed {seed}"] = (same_time, seconds, done)
            pairs.append((seed, fw["fid"], same_batches["fid"], same_time["fid"], fw_seconds, done))
            print(f"seed {seed}: config FID {fw['fid']:.2f}, plain {same_batches['fid']:.2f} at equal batches, "
                  f"{same_time['fid']:.2f} at equal CPU s ({done} batches, {fw_seconds:.0f} s)", flush=True)  # fmt: skip
            lr = config_lr(gan)
        # Ablation: the plain loop at the config's learning rate (no R1, no EMA) separates what the lr buys
        # from what the framework's regularisation and averaging buy.
        if lr != 2e-4 and args.lr_ablation:
            plain, seconds, done = train_plain(dm, args.batches, args.width, lr, seed=args.seeds[0])
            name = f"plain loop at the config's lr {lr:g}, seed {args.seeds[0]}"
            rows[name] = (score(plain_samples(plain, args.num_samples)), seconds, done)

    print(
        f"MNIST PNGs, 28 px, {args.batches} batches of 64, width {args.width}; extractor held-out acc {acc:.4f}"
    )
    print("CPU s = process CPU time of the training (1 thread: its wall time on a quiet machine)")
    print("| model | batches | CPU s | FID | KID | IS |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (v, s, done) in rows.items():
        print(f"| {name} | {done} | {s:.0f} | {v['fid']:.2f} | {v['kid']:.3f} | {v['is']:.2f} |")
    print("\n| seed | config FID | plain, equal batches | ratio | plain, equal CPU s (batches) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for seed, fw, same_batches, same_time, seconds, done in pairs:
        print(
            f"| {seed} | {fw:.2f} | {same_batches:.2f} | {fw / same_batches:.3f} | "
            f"{same_time:.2f} ({done}; {seconds:.0f} s) | {fw / same_time:.3f} |"
        )


if __name__ == "__main__":
    main()
