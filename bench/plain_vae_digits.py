"""``configs/vae/vae_digits.yaml`` as a plain PyTorch script: the seed's 784-400-20 MLP VAE on the digits.

The project's ``MLPEncoder`` / ``MLPDecoder``, digits upsampled to 28 px, a seeded 90/10 split, dynamic
binarisation (``torch.bernoulli``), 60 epochs of 25 batches of 64, Adam 1e-3 (torch's default kernel) with cosine
decay to 1e-4, the ELBO (Bernoulli likelihood summed over pixels + KL with the config's linear β warm-up over 500
batches), one ``torch.save`` at the end. ``--fused --uniform_binarize`` switch to the kernels the framework uses;
``--freeze_at_exit`` ends with ``gc.freeze()``, as the framework's entry point does (a faster interpreter exit).
The reference ``bench/user_overhead.py`` times ``python -m aigc_lightning fit --config configs/vae/vae_digits.yaml``
against.

    python bench/plain_vae_digits.py --out /tmp/plain_vae.pt
"""

from __future__ import annotations

import argparse
import gc

import torch
import torch.nn.functional as F

from aigc_lightning.nets import MLPDecoder, MLPEncoder
from plain_dcgan_digits import digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--warmup_batches", type=int, default=500)
    parser.add_argument("--out", default="plain_vae_digits.pt")
    # Off by default: a plain script as usually written. On: the two kernels the framework's config and
    # DataModule use, so that the comparison isolates Lightning's loop and the conveniences.
    parser.add_argument("--fused", action="store_true", help="fused Adam, as configs/vae/vae_digits.yaml")
    parser.add_argument("--uniform_binarize", action="store_true", help="binarise as U < p, as the DataModule")
    parser.add_argument("--freeze_at_exit", action="store_true", help="gc.freeze() at the end, as cli.run")
    args = parser.parse_args()

    torch.manual_seed(0)
    x01 = (digits(28) + 1) / 2  # (N, 1, 28, 28) in [0, 1]
    order = torch.randperm(len(x01), generator=torch.Generator().manual_seed(0))
    train = x01[order[round(len(x01) * 0.1) :]]  # DigitsDataModule's split: 1,617 training digits
    enc = MLPEncoder(channels=1, image_size=28, hidden_dim=400, latent_dim=20)
    dec = MLPDecoder(channels=1, image_size=28, hidden_dim=400, latent_dim=20)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3, fused=args.fused or None)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs, eta_min=1e-4)
    batches = 0
    for _ in range(args.epochs):
        perm = torch.randperm(len(train))
        for i in range(len(train) // args.batch_size):  # drop_last, like the DataModule
            p = train[perm[i * args.batch_size : (i + 1) * args.batch_size]]
            x = (torch.rand_like(p) < p).float() if args.uniform_binarize else torch.bernoulli(p)
            mu, logvar = enc(x)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            recon = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").flatten(1).sum(1)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            beta = min(1.0, batches / args.warmup_batches)
            loss = (recon + beta * kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            batches += 1
            if not torch.isfinite(loss):
                raise SystemExit(f"non-finite loss at batch {batches}")
        sched.step()
    torch.save({"encoder": enc.state_dict(), "decoder": dec.state_dict()}, args.out)
    print(f"plain VAE: {batches} batches, saved {args.out}")
    if args.freeze_at_exit:
        gc.freeze()


if __name__ == "__main__":
    main()
