"""Framework overhead: GAN ``Trainer.fit`` steps/s against a plain-PyTorch loop over the same networks and batches.

Both sides run the same algorithm per batch: one D step (non-saturating loss, logits form), one G step, one EMA
update of the generator. The framework side adds what a user gets from ``fit``: manual optimization through
``self.optimizers()`` / ``manual_backward`` / ``toggled_optimizer``, ``check_finite``, ``self.log`` of 5 scalars
per batch, the loop and callbacks (logger, checkpointing, progress bar and image grids off, so no disk I/O is
timed). Runs are interleaved (plain, framework, plain, ...) and the median of each is reported, so drifting load
on a shared machine hits both sides alike.

    python bench/overhead.py                      # digits-config networks (width 32, 32 px, batch 64)
    python bench/overhead.py --width 64 --repeats 7

The last line is ``framework/plain steps-per-second ratio: R`` (goal >= 0.97).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

from aigc_lightning.modules import GAN
from aigc_lightning.nets import Discriminator, Generator


def make_nets(args: argparse.Namespace) -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    g = Generator(latent_dim=100, channels=1, image_size=args.image_size, width=args.width)
    d = Discriminator(channels=1, image_size=args.image_size, width=args.width)
    return g, d


def make_loader(args: argparse.Namespace) -> DataLoader:
    n = args.batch_size * (args.warmup + args.batches)
    x = torch.rand(n, 1, args.image_size, args.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DataLoader(TensorDataset(x, torch.zeros(n)), batch_size=args.batch_size, shuffle=False, drop_last=True)


def plain(args: argparse.Namespace) -> float:
    """The reference: a hand-written loop doing what GAN.training_step does. Returns timed batches per second."""
    g, d = make_nets(args)
    g_ema = Generator(latent_dim=100, channels=1, image_size=args.image_size, width=args.width)
    g_ema.load_state_dict(g.state_dict())
    g_ema.requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    start = None
    for i, (real, _) in enumerate(make_loader(args)):
        if i == args.warmup:
            start = time.perf_counter()
        z = torch.randn(real.shape[0], 100)
        fake = g(z).detach()
        loss_d = (F.softplus(-d(real)) + F.softplus(d(fake))).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        d.requires_grad_(False)  # as toggled_optimizer does: no D gradients in the G step
        loss_g = F.softplus(-d(g(torch.randn(real.shape[0], 100)))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        d.requires_grad_(True)
        with torch.no_grad():
            decay = min(0.999, (1 + i) / (10 + i))
            torch._foreach_lerp_(list(g_ema.parameters()), list(g.parameters()), 1 - decay)
            for b_ema, b in zip(g_ema.buffers(), g.buffers()):
                b_ema.copy_(b)
        _ = (loss_d.item(), loss_g.item())  # the framework's logging reads the values too
    return args.batches / (time.perf_counter() - start)


class Timer(Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.count = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self.end, self.count = time.perf_counter(), self.count + 1


def framework(args: argparse.Namespace) -> float:
    g, d = make_nets(args)
    opt = lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))  # noqa: E731
    model = GAN(g, d, optimizer_g=opt, optimizer_d=opt, ema_decay=0.999, log_images_every_n_batches=0)
    timer = Timer(args.warmup)
    trainer = Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, make_loader(args))
    return timer.count / (timer.end - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches per run")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0, verbose=False)
    results: dict[str, list[float]] = {"plain PyTorch": [], "aigc_lightning GAN.fit": []}
    for r in range(args.repeats):
        results["plain PyTorch"].append(plain(args))
        results["aigc_lightning GAN.fit"].append(framework(args))
        print(f"run {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in results.items()), flush=True)
    base = statistics.median(results["plain PyTorch"])
    print(f"\nDCGAN width {args.width}, {args.image_size} px, batch {args.batch_size}, {args.threads} thread(s), "
          f"{args.batches} timed batches x {args.repeats} interleaved runs (median)")
    print(f"{'':24s} {'batches/s':>10s} {'min':>8s} {'max':>8s} {'ratio':>7s}")
    for name, values in results.items():
        m = statistics.median(values)
        print(f"{name:24s} {m:10.3f} {min(values):8.3f} {max(values):8.3f} {m / base:7.3f}")
    # Median of the per-pair ratios: each pair ran back to back, so it is robust to load drifting between pairs.
    pairs = [f / p for f, p in zip(results["aigc_lightning GAN.fit"], results["plain PyTorch"])]
    print(f"per-pair ratios: {', '.join(f'{r:.3f}' for r in pairs)}")
    ratio = statistics.median(pairs)
    print(f"framework/plain steps-per-second ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
