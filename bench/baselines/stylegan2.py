"""``configs/gan/stylegan2_digits.yaml`` as a plain PyTorch script: what that config trains, without the framework.

The project's ``StyleGAN2Generator`` / ``StyleGAN2Discriminator`` (latent 64, 2 mapping layers, 32 feature maps,
minibatch-stddev groups of 4), scikit-learn's digits upsampled to 32 px in [-1, 1], a seeded 90/10 split, 30 epochs
of 50 shuffled batches of 32, Adam (lr 0.0025, β 0/0.99, with StyleGAN2's lazy-regularisation correction), the
non-saturating loss, style mixing 0.9, lazy R1 (γ 0.05 every 16th D step), lazy path length (weight 2 every 4th
batch, decay 0.01, half batch), DiffAugment ``translation,cutout`` with ADA's probability (target 0.6, 100 kimg,
every 4 batches), an EMA of G (decay 0.98897, ramp-up 10), one ``torch.save`` at the end. The loop is written out
here; only the math is the project's (nets, ``losses``, ``augment``). No validation, metrics, logging or
checkpoints: the reference ``python -m bench user_overhead`` times ``python -m aigc_lightning fit --config
configs/gan/stylegan2_digits.yaml`` against.

    python -m bench.baselines.stylegan2 --out /tmp/plain_sg2.pt
    python -m bench.baselines.stylegan2 --epochs 1 --max_batches 3 --out /tmp/t.pt    # a smoke run
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F

from aigc_lightning.augment import augment_with_probability
from aigc_lightning.losses import path_length_penalty, path_lengths, r1_penalty
from aigc_lightning.nets import StyleGAN2Discriminator, StyleGAN2Generator
from aigc_lightning.nets.stylegan2 import mix_styles
from bench.baselines.dcgan import digits, training_split

# the config's model options
LR, BETAS, EPS = 0.0025, (0.0, 0.99), 1e-8
R1_GAMMA, R1_EVERY = 0.05, 16
PL_WEIGHT, PL_EVERY, PL_DECAY, PL_SHRINK = 2.0, 4, 0.01, 2
MIXING = 0.9
POLICY = ("translation", "cutout")
ADA_TARGET, ADA_KIMG, ADA_INTERVAL = 0.6, 100, 4
EMA_DECAY, EMA_WARMUP = 0.98897, 10


def fakes(g: StyleGAN2Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training fakes and their ws (n, num_ws, w_dim), each sample mixed with a second latent's ws from a
    random layer on with probability ``MIXING``; ``w_avg`` follows the first latent only."""
    z = torch.randn(n, g.latent_dim)
    ws = g.mapping(z)
    ws2 = g.mapping(torch.randn_like(z), update_w_avg=False)
    cut = torch.randint(1, g.num_ws, (n,))
    mixed = torch.rand(n) < MIXING
    ws = mix_styles(ws, ws2, torch.where(mixed, cut, torch.full_like(cut, g.num_ws)))
    return g.synthesis(ws), ws


def lazy_adam(params, interval: int) -> torch.optim.Adam:
    """Adam with lr × c and betas ** c, c = k / (k + 1), for a regulariser every k-th step (StyleGAN2 §B)."""
    c = interval / (interval + 1)
    return torch.optim.Adam(params, lr=LR * c, betas=(BETAS[0] ** c, BETAS[1] ** c), eps=EPS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_batches", type=int, default=None, help="stop after N batches (smoke tests)")
    parser.add_argument("--out", default="plain_stylegan2_digits.pt")
    args = parser.parse_args()

    torch.manual_seed(0)
    train = training_split(digits(32))
    g = StyleGAN2Generator(image_size=32, channels=1, latent_dim=64, n_mlp=2, channel_max=32)
    d = StyleGAN2Discriminator(image_size=32, channels=1, channel_max=32, mbstd_group_size=4)
    g_ema = copy.deepcopy(g).requires_grad_(False)
    opt_g, opt_d = lazy_adam(g.parameters(), PL_EVERY), lazy_adam(d.parameters(), R1_EVERY)
    p, sign_sum, seen = 0.0, 0.0, 0  # ADA: augmentation probability and the r_t sums since its last update
    pl_mean = 0.0
    batches = d_steps = r1_steps = pl_steps = 0
    for _ in range(args.epochs):
        perm = torch.randperm(len(train))
        for i in range(len(train) // args.batch_size):
            if args.max_batches is not None and batches >= args.max_batches:
                break
            real = train[perm[i * args.batch_size : (i + 1) * args.batch_size]]
            n = len(real)

            # D step: non-saturating loss on augmented reals and fakes, + lazy R1 on every 16th D step
            g.requires_grad_(False)
            fake = fakes(g, n)[0].detach()
            real_logits = d(augment_with_probability(real, POLICY, p))
            fake_logits = d(augment_with_probability(fake, POLICY, p))
            sign_sum, seen = sign_sum + float(real_logits.detach().sign().sum()), seen + n
            loss_d = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
            if d_steps % R1_EVERY == 0:
                r1 = r1_penalty(d, augment_with_probability(real, POLICY, p)).mean()
                loss_d = loss_d + R1_GAMMA / 2 * r1 * R1_EVERY
                r1_steps += 1
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            d_steps += 1
            g.requires_grad_(True)

            # G step: non-saturating loss, + lazy path length on every 4th batch (half a batch of fresh fakes)
            d.requires_grad_(False)
            loss_g = F.softplus(-d(augment_with_probability(fakes(g, n)[0], POLICY, p))).mean()
            if batches % PL_EVERY == 0:
                images, ws = fakes(g, max(1, n // PL_SHRINK))
                lengths = path_lengths(images, ws)  # (n / 2,)
                pl_mean += PL_DECAY * (float(lengths.detach().mean()) - pl_mean)
                loss_g = loss_g + PL_WEIGHT * PL_EVERY * path_length_penalty(lengths, pl_mean).mean()
                pl_steps += 1
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            d.requires_grad_(True)

            with torch.no_grad():  # EMA of G with a ramp-up
                decay = min(EMA_DECAY, (1 + batches) / (EMA_WARMUP + batches))
                torch._foreach_lerp_(list(g_ema.parameters()), list(g.parameters()), 1 - decay)
                for b_ema, b in zip(g_ema.buffers(), g.buffers()):
                    b_ema.copy_(b)
            batches += 1
            if batches % ADA_INTERVAL == 0:  # ADA: move p toward E[sign D(real)] = target
                rt = sign_sum / seen
                step = (1.0 if rt > ADA_TARGET else -1.0 if rt < ADA_TARGET else 0.0) * seen
                p = min(max(p + step / (ADA_KIMG * 1000), 0.0), 1.0)
                sign_sum, seen = 0.0, 0
            if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):  # what any training script checks
                raise SystemExit(f"non-finite loss at batch {batches}")
    nets = {"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict()}
    torch.save({**nets, "p": p, "pl_mean": pl_mean}, args.out)
    print(f"plain StyleGAN2: {batches} batches, {d_steps} D steps, {r1_steps} R1, {pl_steps} path length, "
          f"ADA p {p:.5f}, saved {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
