"""VAE quality: importance-weighted NLL of the MLP config vs a plain-PyTorch VAE of the same size and budget.

    python bench/vae_nll.py [--root MNIST_PNGS] [--epochs 20] [--k 1000]
        [--variant "CLI OVERRIDES" ...] [--variants_only] [--seed_recipe] [--reference_epochs N] [--seed S]

Data: the 10,000 real MNIST test PNGs through ``ImageFolderDataModule(image_size=28, channels=1, binarize=True,
val_fraction=0.2, seed=0)``: a seeded 8,000 images train (dynamically binarised every epoch), the other 2,000 are
the held-out evaluation set (binarised once, seeded). Both models see the same loaders.

- reference: the seed's 784-400-20 VAE in plain PyTorch (its bugs fixed: BCE-with-logits on [0, 1] targets,
  summed over pixels, + analytic KL), Adam 1e-3, batch 128, ``--epochs`` epochs.
- framework: ``configs/vae/vae_mlp_mnist.yaml`` as shipped (its batch size, optimizer, objective), through the
  CLI's parser, with the data pointed at the folder and trained by ``Trainer.fit`` for the same epochs; a KL
  warm-up in the config (if any) is scaled to the first 10 % of batches and a cosine schedule (if any) to the run
  (``T_max`` = ``--epochs``, as a user sets it to ``max_epochs``).
- equal seconds: the reference once more, trained until it has used the CPU time the as-shipped row's ``fit``
  took (process CPU time, ``time.process_time``: with one thread it equals wall time on a quiet machine and is
  not inflated by other jobs on a shared one).
- ``--variant "ARGS"`` (repeatable): another row, the config as shipped plus these CLI overrides, e.g.
  ``--variant "--model.init_args.train_importance_samples 5"``; ``--variants_only`` skips the as-shipped row.
- ``--reference_epochs N``: the reference once more, trained N epochs (compares at equal training time).
- ``--seed S``: the training seed of every row (framework ``seed_everything``, the reference's torch seed); the
  split and the held-out binarisation stay fixed.
- ``--seed_recipe``: also the same config with the seed's batch 128, Adam 1e-3, no warm-up, schedule, IWAE or
  extra callbacks (checks the framework itself: with the same seed it reproduces the reference's numbers).

Every model is scored by one independent function here (``iw_nll``, same seeded noise) and the as-shipped
framework model also by its own ``Trainer.test`` (``test/nll_iw``): the two should agree within Monte-Carlo noise.
Prints a table (epochs, training CPU seconds, −ELBO and IW-NLL in nats per image, lower is better, and the NLL's
difference to the reference) and the as-shipped config against the seed recipe at equal epochs and at equal CPU
seconds, side by side.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from aigc_lightning.cli import AigcCLI
from aigc_lightning.datamodules import ImageFolderDataModule

CONFIG = Path(__file__).resolve().parents[1] / "configs/vae/vae_mlp_mnist.yaml"
LOG_2PI = math.log(2 * math.pi)


class SeedVAE(nn.Module):
    """The seed's network, written out plainly (fc1, fc21, fc22, fc3, fc4)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def encode(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        return self.fc21(h), self.fc22(h)

    def decode(self, z):
        return self.fc4(F.relu(self.fc3(z)))  # logits (B, 784)


def train_reference(dm, epochs: float, cpu_seconds: float | None = None) -> tuple[nn.Module, float, float]:
    """The seed recipe for ``epochs`` epochs, or (``cpu_seconds``) until this process has used that much CPU time.

    Returns ``(model, CPU seconds, epochs done)``; with a CPU budget the last epoch may be partial.
    """
    model = SeedVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start, done, per_epoch = time.process_time(), 0, len(dm.train_dataloader())
    while cpu_seconds is not None or done < epochs * per_epoch:
        for x, _ in dm.train_dataloader():
            x = ((x + 1) / 2).view(-1, 784)  # [-1, 1] → {0, 1}
            mu, logvar = model.encode(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            bce = F.binary_cross_entropy_with_logits(model.decode(z), x, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (bce + kld) / x.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            used = time.process_time() - start
            if (cpu_seconds is not None and used >= cpu_seconds) or (
                cpu_seconds is None and done >= epochs * per_epoch
            ):
                return model, used, done / per_epoch
    return model, time.process_time() - start, done / per_epoch


def train_framework(root: str, epochs: int, recipe: bool, extra: list[str], test: bool = True):
    """Fit ``CONFIG`` on the folder; returns ``(model, train seconds, test metrics or {})``.

    ``recipe``: the config as shipped, its KL warm-up (if any) scaled to the first 10 % of batches and its cosine
    schedule (if any) to the run; otherwise the seed's recipe: no warm-up, no schedule, no extra callbacks.
    """
    config = yaml.safe_load(CONFIG.read_text())
    model_args = config["model"]["init_args"]
    batch_size = config["data"]["init_args"]["batch_size"]
    batches = 8000 // batch_size
    args = [
        "--config", str(CONFIG),
        "--data", "aigc_lightning.datamodules.ImageFolderDataModule",
        "--data.root", root, "--data.image_size", "28", "--data.channels", "1", "--data.binarize", "true",
        "--data.val_fraction", "0.2", "--data.batch_size", str(batch_size), "--data.seed", "0",
        "--trainer.max_epochs", str(epochs), "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", "/tmp/vae_nll_bench",
        "--model.init_args.test_importance_samples", "1000",
    ]  # fmt: skip
    if recipe:
        if model_args.get("warmup_batches", 0) > 0:
            args += ["--model.init_args.warmup_batches", str(epochs * batches // 10)]
        scheduler = model_args.get("lr_scheduler") or {}
        if scheduler.get("class_path", "").endswith("CosineAnnealingLR"):
            args += ["--model.init_args.lr_scheduler.init_args.T_max", str(epochs)]
    else:
        args += ["--model.init_args.warmup_batches", "0", "--model.init_args.lr_scheduler", "null",
                 "--model.init_args.train_importance_samples", "1", "--trainer.callbacks=[]",
                 "--data.batch_size", "128", "--model.init_args.optimizer.init_args.lr", "0.001"]  # fmt: skip
    cli = AigcCLI(args=args + extra, run=False)
    # decode the PNGs before the clock starts (the reference gets them decoded too)
    cli.datamodule.setup("fit")
    start = time.process_time()  # CPU time of this process (1 thread: its wall time on a quiet machine)
    cli.trainer.fit(cli.model, cli.datamodule)
    seconds = time.process_time() - start
    result = cli.trainer.test(cli.model, cli.datamodule, verbose=False)[0] if test else {}
    return cli.model, seconds, result


@torch.no_grad()
def iw_nll(encode, decode, xs: torch.Tensor, k: int, seed: int = 0) -> tuple[float, float]:
    """(−ELBO, −IW bound) in nats per image, averaged over ``xs`` (N, 784) in {0, 1}; written independently."""
    g = torch.Generator().manual_seed(seed)
    nelbo, nll = [], []
    for x in xs.split(100):
        mu, logvar = encode(x)
        logvar = logvar.clamp(-30, 20)
        std = torch.exp(0.5 * logvar)
        log_w = []
        for _ in range(0, k, 50):
            eps = torch.randn(50, *mu.shape, generator=g)  # (50, B, 20)
            z = mu + std * eps
            logits = decode(z.view(-1, 20)).view(50, x.shape[0], 784)
            log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(
                -1
            )
            log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
            log_qz = -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1)
            log_w.append(log_px + log_pz - log_qz)
        log_w = torch.cat(log_w)[:k].double()  # (k, B)
        nelbo.append(-log_w.mean(0))
        nll.append(-(torch.logsumexp(log_w, 0) - math.log(k)))
    return torch.cat(nelbo).mean().item(), torch.cat(nll).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--root", default=str(Path(__file__).resolve().parents[2] / "shared/data/mnist_t10k_png")
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=1000, help="importance samples of the NLL bound")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--framework_args", default="", help="extra CLI overrides for the framework run, one string"
    )
    parser.add_argument(
        "--variant", action="append", default=[], metavar="ARGS",
        help="another framework row: the config as shipped plus these CLI overrides (one string; repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--reference_epochs", type=int, default=None,
        help="also the reference trained this many epochs (e.g. to match a slower row's training time)",
    )  # fmt: skip
    parser.add_argument("--variants_only", action="store_true", help="skip the as-shipped row")
    parser.add_argument("--seed_recipe", action="store_true", help="add the framework/seed-recipe row")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every row (the data split stays)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    runs = [] if args.variants_only else [(args.framework_args, True)]
    runs += [(v, False) for v in args.variant]
    rows, dm, xs, framework_test, shipped = [], None, None, None, None
    for extra, test in runs:
        seed = ["--seed_everything", str(args.seed)]
        model, seconds, result = train_framework(args.root, args.epochs, True, seed + extra.split(), test)
        if dm is None:
            dm = model.trainer.datamodule
            # the held-out 2,000, binarised once (seeded): the same images for every row
            xs = torch.cat([(x + 1) / 2 for x, _ in dm.val_dataloader()]).view(-1, 784)  # (2000, 784)
        enc = lambda x, m=model: m.encode(x.view(-1, 1, 28, 28))
        dec = lambda z, m=model: m.decode(z).view(-1, 784)
        label = extra or "as shipped"
        rows.append((f"framework: {label}", seconds, args.epochs, *iw_nll(enc, dec, xs, args.k)))
        if test:
            framework_test, shipped = result["test/nll_iw"], rows[-1]

    # the seed recipe's batch 128 (the config's may differ); the same split, seed and binarised held-out images
    dm = ImageFolderDataModule(
        root=args.root, image_size=28, channels=1, binarize=True, val_fraction=0.2, batch_size=128, seed=0
    )
    dm.setup("fit")
    torch.manual_seed(args.seed)
    reference, seconds, epochs = train_reference(dm, args.epochs)
    rows.insert(
        0,
        (
            "reference: plain PyTorch, seed recipe",
            seconds,
            epochs,
            *iw_nll(reference.encode, reference.decode, xs, args.k),
        ),
    )
    equal_time = None
    if shipped is not None:
        # the plain recipe given the CPU time the as-shipped config took for its epochs
        torch.manual_seed(args.seed)
        longer, seconds, epochs = train_reference(dm, args.epochs, cpu_seconds=shipped[1])
        equal_time = (
            "reference: seed recipe, the config's CPU seconds",
            seconds,
            epochs,
            *iw_nll(longer.encode, longer.decode, xs, args.k),
        )
        rows.insert(1, equal_time)
    if args.reference_epochs:
        torch.manual_seed(args.seed)
        longer, seconds, epochs = train_reference(dm, args.reference_epochs)
        name = f"reference: seed recipe, {args.reference_epochs} epochs"
        rows.insert(1, (name, seconds, epochs, *iw_nll(longer.encode, longer.decode, xs, args.k)))
    if args.seed_recipe:
        model2, seconds, _ = train_framework(args.root, args.epochs, False, ["--seed_everything", str(args.seed)], False)
        enc2 = lambda x: model2.encode(x.view(-1, 1, 28, 28))
        dec2 = lambda z: model2.decode(z).view(-1, 784)
        rows.append(
            ("framework: same config, seed recipe", seconds, args.epochs, *iw_nll(enc2, dec2, xs, args.k))
        )

    ref = rows[0]
    print(
        f"\nMNIST PNGs: 8,000 train / 2,000 held-out eval, {args.epochs} epochs, k = {args.k}; CPU s = process CPU time"
    )
    width = max(52, *(len(r[0]) for r in rows))
    print(f"{'model':{width}s} {'epochs':>6s} {'CPU s':>7s} {'−ELBO':>8s} {'IW-NLL':>8s} {'Δ NLL':>7s}")
    for name, secs, epochs, nelbo, nll in rows:
        print(f"{name:{width}s} {epochs:6.1f} {secs:7.1f} {nelbo:8.2f} {nll:8.2f} {nll - ref[4]:+7.2f}")
    if shipped is not None:
        print("\n| budget | config IW-NLL | plain recipe IW-NLL | Δ (config − plain) |")
        print("|---|---:|---:|---:|")
        print(
            f"| equal epochs ({args.epochs}) | {shipped[4]:.2f} | {ref[4]:.2f} | {shipped[4] - ref[4]:+.2f} |"
        )
        print(
            f"| equal CPU seconds ({shipped[1]:.0f} s; plain: {equal_time[2]:.1f} epochs) | {shipped[4]:.2f} | "
            f"{equal_time[4]:.2f} | {shipped[4] - equal_time[4]:+.2f} |"
        )
    if framework_test is not None:
        print(
            f"as-shipped row's own Trainer.test: test/nll_iw = {framework_test:.2f} (k = 1000, its own noise)"
        )


if __name__ == "__main__":
    main()
