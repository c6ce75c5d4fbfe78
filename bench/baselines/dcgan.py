"""The main job as a plain PyTorch script: what ``configs/gan/dcgan_digits.yaml`` trains, without the framework.

The project's ``Generator`` / ``Discriminator`` (width 32, 32 px), scikit-learn's digits upsampled to 32 px in
[-1, 1], a seeded 90/10 split, 40 epochs of 25 shuffled batches of 64, Adam (2e-4, β 0.5/0.999), the
non-saturating loss in logits form, an EMA of G with the config's ramp-up, one ``torch.save`` at the end. No
validation, metrics, logging or checkpoints: the reference ``python -m bench user_overhead`` times the framework
against. ``gan_step`` is also the plain side of ``python -m bench overhead``; ``example_loop`` is the PyTorch DCGAN
example's loop that ``python -m bench gan_fid`` scores.

    python -m bench.baselines.dcgan --out /tmp/plain_gan.pt
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from aigc_lightning.nets import Discriminator, Generator


def digits(image_size: int) -> torch.Tensor:
    """All 1,797 digits as (N, 1, S, S) in [-1, 1], upsampled like ``DigitsDataModule`` (bilinear, antialiased)."""
    x = torch.from_numpy(load_digits().images).float().div(16)[:, None]  # (N, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1) * 2 - 1


def training_split(x: torch.Tensor) -> torch.Tensor:
    """The 90 % training split of ``DigitsDataModule`` (val_fraction 0.1, seed 0)."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order[round(len(x) * 0.1) :]]


def gan_step(g, d, g_ema, opt_g, opt_d, real: torch.Tensor, batch: int, ema_decay: float):
    """One batch of what ``GAN.training_step`` does: a D step on fakes made without a graph (as
    ``toggled_optimizer(opt_d)``: G frozen), a G step with D frozen, an EMA update with a ramp-up. Returns the losses."""
    with torch.no_grad():
        fake = g(torch.randn(len(real), g.latent_dim, device=real.device))
    loss_d = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    d.requires_grad_(False)  # as toggled_optimizer(opt_g): no D gradients in the G step
    loss_g = F.softplus(-d(g(torch.randn(len(real), g.latent_dim, device=real.device)))).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    d.requires_grad_(True)
    with torch.no_grad():
        decay = min(ema_decay, (1 + batch) / (10 + batch))
        torch._foreach_lerp_(list(g_ema.parameters()), list(g.parameters()), 1 - decay)
        for b_ema, b in zip(g_ema.buffers(), g.buffers()):
            b_ema.copy_(b)
    return loss_d, loss_g


def adam_pair(g, d, lr: float = 2e-4):
    return (torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999)) for net in (g, d))


def example_loop(loader, g, d, batches: int, lr: float = 2e-4, cpu_seconds: float | None = None):
    """The pytorch/examples DCGAN loop (D step on detached fakes, then G step, no EMA) for ``batches`` batches, or
    (``cpu_seconds``) until this process has used that much CPU time. Returns ``(g, CPU seconds, batches done)``."""
    opt_g, opt_d = adam_pair(g, d, lr)
    start, done = time.process_time(), 0
    while True:
        for real, _ in loader():
            z = torch.randn(real.shape[0], g.latent_dim)
            loss_d = (F.softplus(-d(real)) + F.softplus(d(g(z).detach()))).mean()
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            loss_g = F.softplus(-d(g(torch.randn(real.shape[0], g.latent_dim)))).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            done += 1
            used = time.process_time() - start
            if (used >= cpu_seconds) if cpu_seconds is not None else done >= batches:
                return g, used, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--out", default="plain_dcgan_digits.pt")
    args = parser.parse_args()

    torch.manual_seed(0)
    train = training_split(digits(32))
    g, d = Generator(latent_dim=100, channels=1, image_size=32, width=32), Discriminator(channels=1, width=32)
    g_ema = copy.deepcopy(g).requires_grad_(False)
    opt_g, opt_d = adam_pair(g, d)
    batches = 0
    for _ in range(args.epochs):
        perm = torch.randperm(len(train))
        for i in range(len(train) // args.batch_size):
            real = train[perm[i * args.batch_size : (i + 1) * args.batch_size]]
            loss_d, loss_g = gan_step(g, d, g_ema, opt_g, opt_d, real, batches, ema_decay=0.995)
            batches += 1
            if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):  # what any training script checks
                raise SystemExit(f"non-finite loss at batch {batches}")
    torch.save({"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict()}, args.out)
    print(f"plain DCGAN: {batches} batches, saved {args.out}")


if __name__ == "__main__":
    main()
