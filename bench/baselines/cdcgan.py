"""A class-conditional DCGAN as a plain PyTorch loop: the reference ``python -m bench cdcgan_fid`` scores
``configs/gan/cdcgan_mnist.yaml`` against.

The pytorch/examples DCGAN loop (Adam 2e-4, β 0.5/0.999, non-saturating loss in logits form, no EMA) on the
project's conditional ``Generator`` / projection ``Discriminator`` (``num_classes`` > 0): D sees real images with
their labels and fakes of the same labels, G's step draws labels uniformly, as ``GAN`` does.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F


def conditional_example_loop(loader, g, d, batches: int, lr: float = 2e-4, cpu_seconds: float | None = None):
    """``batches`` batches (or, with ``cpu_seconds``, until this process used that much CPU time) of the plain
    conditional loop; returns ``(g, CPU seconds, batches done)``."""
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
    start, done = time.process_time(), 0
    while True:
        for real, y in loader():
            z = torch.randn(real.shape[0], g.latent_dim)
            loss_d = (F.softplus(-d(real, y)) + F.softplus(d(g(z, y).detach(), y))).mean()
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            y_fake = torch.randint(g.num_classes, (real.shape[0],))
            loss_g = F.softplus(-d(g(torch.randn(real.shape[0], g.latent_dim), y_fake), y_fake)).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            done += 1
            used = time.process_time() - start
            if (used >= cpu_seconds) if cpu_seconds is not None else done >= batches:
                return g, used, done
