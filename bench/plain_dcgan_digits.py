"""The main job as a plain PyTorch script: what ``configs/gan/dcgan_digits.yaml`` trains, without the framework.

The project's own ``Generator`` / ``Discriminator`` (width 32, 32 px), scikit-learn's digits upsampled to 32 px in
[-1, 1], a seeded 90/10 split, 40 epochs of 25 shuffled batches of 64, Adam (2e-4, β 0.5/0.999), the
non-saturating loss in logits form, an EMA of G with the config's ramp-up, one ``torch.save`` at the end. No
validation, metrics, logging or checkpoints: the reference ``bench/user_overhead.py`` times the framework against.

    python bench/plain_dcgan_digits.py --out /tmp/plain_gan.pt
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from aigc_lightning.nets import Discriminator, Generator


def digits(image_size: int) -> torch.Tensor:
    """All 1,797 digits as (N, 1, S, S) in [-1, 1], upsampled like ``DigitsDataModule`` (bilinear, antialiased)."""
    x = torch.from_numpy(load_digits().images).float().div(16)[:, None]  # (N, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1) * 2 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--out", default="plain_dcgan_digits.pt")
    args = parser.parse_args()

    torch.manual_seed(0)
    x = digits(32)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train = x[order[round(len(x) * 0.1) :]]  # the 90 % training split (DigitsDataModule's val_fraction 0.1)
    g, d = Generator(latent_dim=100, channels=1, image_size=32, width=32), Discriminator(channels=1, width=32)
    g_ema = copy.deepcopy(g).requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batches = 0
    for _ in range(args.epochs):
        perm = torch.randperm(len(train))
        for i in range(len(train) // args.batch_size):
            real = train[perm[i * args.batch_size : (i + 1) * args.batch_size]]
            z = torch.randn(len(real), 100)
            with torch.no_grad():
                fake = g(z)
            real_logits, fake_logits = d(real), d(fake)
            loss_d = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            d.requires_grad_(False)
            loss_g = F.softplus(-d(g(torch.randn(len(real), 100)))).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            d.requires_grad_(True)
            with torch.no_grad():
                decay = min(0.995, (1 + batches) / (10 + batches))
                torch._foreach_lerp_(list(g_ema.parameters()), list(g.parameters()), 1 - decay)
                for b_ema, b in zip(g_ema.buffers(), g.buffers()):
                    b_ema.copy_(b)
            batches += 1
            if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):  # what any training script checks
                raise SystemExit(f"non-finite loss at batch {batches}")
    torch.save({"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict()}, args.out)
    print(f"plain DCGAN: {batches} batches, saved {args.out}")


if __name__ == "__main__":
    main()
