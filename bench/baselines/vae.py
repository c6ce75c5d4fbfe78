"""``configs/vae/vae_digits.yaml`` as a plain PyTorch script, and the seed's 784-400-20 VAE for the MNIST NLL cases.

The script: the project's ``MLPEncoder`` / ``MLPDecoder``, digits upsampled to 28 px, a seeded 90/10 split,
dynamic binarisation (``torch.bernoulli``), 60 epochs of 25 batches of 64, Adam 1e-3 (torch's default kernel)
with cosine decay to 1e-4, the ELBO (Bernoulli likelihood summed over pixels + KL with the config's linear β
warm-up over 500 batches), one ``torch.save`` at the end. ``--fused --uniform_binarize`` switch to the kernels the
framework uses; ``--freeze_at_exit`` ends with ``gc.freeze()``, as the framework's entry point does.

    python -m bench.baselines.vae --out /tmp/plain_vae.pt

``SeedVAE``, ``train_reference`` and ``iw_nll``: the seed's network and recipe (its bugs fixed: BCE-with-logits on
[0, 1] targets summed over pixels + analytic KL; Adam 1e-3) and an independent importance-weighted NLL bound.
"""

from __future__ import annotations

import argparse
import gc
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from aigc_lightning.nets import MLPDecoder, MLPEncoder
from bench.baselines.dcgan import digits, training_split

LOG_2PI = math.log(2 * math.pi)


def elbo_loss(enc, dec, x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Mean over the batch of the Bernoulli NLL summed over pixels + β · KL summed over latents."""
    mu, logvar = enc(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    recon = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return (recon + beta * kl).mean()


def digits_loop(epochs: int, batch_size: int = 64, warmup_batches: int = 500, fused: bool = False,
                uniform_binarize: bool = False, schedule: bool = True, clock=time.thread_time):  # fmt: skip
    """The script's training; returns (encoder, decoder, batches, ``clock`` seconds of the loop)."""
    torch.manual_seed(0)
    train = training_split((digits(28) + 1) / 2)  # DigitsDataModule's split: 1,617 training digits in [0, 1]
    enc = MLPEncoder(channels=1, image_size=28, hidden_dim=400, latent_dim=20)
    dec = MLPDecoder(channels=1, image_size=28, hidden_dim=400, latent_dim=20)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3, fused=fused or None)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=1e-4)
    batches, start = 0, clock()
    for _ in range(epochs):
        perm = torch.randperm(len(train))
        for i in range(len(train) // batch_size):  # drop_last, like the DataModule
            p = train[perm[i * batch_size : (i + 1) * batch_size]]
            x = (torch.rand_like(p) < p).float() if uniform_binarize else torch.bernoulli(p)
            beta = min(1.0, batches / warmup_batches) if schedule else 1.0
            loss = elbo_loss(enc, dec, x, beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            batches += 1
            if not torch.isfinite(loss):
                raise SystemExit(f"non-finite loss at batch {batches}")
        if schedule:
            sched.step()
    return enc, dec, batches, clock() - start


class SeedVAE(nn.Module):
    """The seed's network written out plainly (fc1, fc21, fc22, fc3, fc4); the sweep's knobs default to off."""

    def __init__(
        self, act: str = "relu", center: bool = False, indrop: float = 0.0, hdrop: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)
        self.act, self.center, self.indrop, self.hdrop = getattr(F, act), center, indrop, hdrop

    def encode(self, x):
        x = x.view(-1, 784)
        x = F.dropout(x, self.indrop) if self.training and self.indrop else x
        h = self.act(self.fc1(x * 2 - 1 if self.center else x))
        h = F.dropout(h, self.hdrop) if self.training and self.hdrop else h
        return self.fc21(h), self.fc22(h)

    def decode(self, z):
        return self.fc4(self.act(self.fc3(z)))  # logits (B, 784)


def train_reference(dm, epochs: float, cpu_seconds: float | None = None) -> tuple[nn.Module, float, float]:
    """The seed recipe for ``epochs`` epochs, or (``cpu_seconds``) until this process has used that much CPU time.
    Returns ``(model, CPU seconds, epochs done)``; with a CPU budget the last epoch may be partial."""
    model = SeedVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start, done, per_epoch = time.process_time(), 0, len(dm.train_dataloader())
    while True:
        for x, _ in dm.train_dataloader():
            x = ((x + 1) / 2).view(-1, 784)  # [-1, 1] → {0, 1}
            mu, logvar = model.encode(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            bce = F.binary_cross_entropy_with_logits(model.decode(z), x, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            opt.zero_grad()
            ((bce + kld) / x.shape[0]).backward()
            opt.step()
            done += 1
            used = time.process_time() - start
            if (used >= cpu_seconds) if cpu_seconds is not None else done >= epochs * per_epoch:
                return model, used, done / per_epoch


@torch.no_grad()
def iw_nll(encode, decode, xs: torch.Tensor, k: int, seed: int = 0) -> tuple[float, float]:
    """(−ELBO, −IW bound) in nats per image, averaged over ``xs`` (N, 784) in {0, 1}; written independently of
    the project's VAE, the same seeded noise for every model."""
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--warmup_batches", type=int, default=500)
    parser.add_argument("--out", default="plain_vae_digits.pt")
    # Off by default: a plain script as usually written. On: the two kernels the framework's config and
    # DataModule use, so that the comparison isolates Lightning's loop and the conveniences.
    parser.add_argument("--fused", action="store_true", help="fused Adam, as configs/vae/vae_digits.yaml")
    parser.add_argument(
        "--uniform_binarize", action="store_true", help="binarise as U < p, as the DataModule"
    )
    parser.add_argument("--freeze_at_exit", action="store_true", help="gc.freeze() at the end, as cli.run")
    args = parser.parse_args()
    enc, dec, batches, _ = digits_loop(args.epochs, args.batch_size, args.warmup_batches, args.fused,
                                       args.uniform_binarize)  # fmt: skip
    torch.save({"encoder": enc.state_dict(), "decoder": dec.state_dict()}, args.out)
    print(f"plain VAE: {batches} batches, saved {args.out}")
    if args.freeze_at_exit:
        gc.freeze()


if __name__ == "__main__":
    main()
