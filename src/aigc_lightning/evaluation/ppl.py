"""Perceptual path length of a StyleGAN generator (Karras et al. 2019, "A Style-Based Generator Architecture", §3):
how much the image changes, perceptually, for a small step in latent space.

StyleGAN2's reported setting, which this follows: W space, endpoint sampling (t = 0, so the pair is ``w0`` and
``w0 + eps (w1 - w0)``), ``eps = 1e-4``, constant noise, distances divided by ``eps^2``, and the mean over the samples
between the 1st and 99th percentiles. The images stay **float32** between the generator and the distance: the pair
differs by ~``eps``, far below one 8-bit level, so rounding to 8 bits (as torchmetrics' ``PerceptualPathLength``
does) turns most distances into 0 or one quantum and the metric into noise.

The distance is the squared L2 distance between the evaluation's features (``Extractor``) of the two images. The
papers use LPIPS-VGG, whose weights cannot be fetched offline: PPL values here are comparable between models scored
with the same extractor, not with the papers' tables.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from aigc_lightning.evaluation.extract import Extractor, ResizeMode, features_of
from aigc_lightning.pixels import to_unit
from aigc_lightning.seeds import randn_from_seeds


def supports_ppl(generator: nn.Module | None) -> bool:
    """Whether ``generator`` has StyleGAN's ``mapping`` (z → ws) and ``synthesis`` (ws → image)."""
    return callable(getattr(generator, "mapping", None)) and callable(getattr(generator, "synthesis", None))


@torch.no_grad()
def path_lengths(
    generator: nn.Module,
    extractor: Extractor,
    mode: ResizeMode = "clean",
    first: int = 0,
    last: int = 1000,
    epsilon: float = 1e-4,
    batch_size: int = 50,
    seed: int = 0,
) -> Tensor:
    """Scaled distances ``d(G(w0), G(w0 + eps (w1 - w0))) / eps^2`` of samples ``first … last - 1`` (float64, CPU).

    Sample i draws its pair of latents from seeds ``seed + 2i`` and ``seed + 2i + 1``, so a range split across
    devices gives the same values as one device.
    """
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    out = []
    for start in range(first, last, batch_size):
        idx = torch.arange(start, min(start + batch_size, last))
        seeds = seed + 2 * idx
        z0 = randn_from_seeds(seeds, (generator.latent_dim,), device)
        z1 = randn_from_seeds(seeds + 1, (generator.latent_dim,), device)
        w0 = generator.mapping(z0, update_w_avg=False)  # (B, num_ws, w_dim)
        w1 = generator.mapping(z1, update_w_avg=False)
        pair = torch.cat([w0, torch.lerp(w0, w1, epsilon)])  # endpoint sampling: t = 0 and t = eps
        with torch.autocast(device.type, enabled=False):
            images = to_unit(generator.synthesis(pair.float(), noise_mode="const"))  # float, never 8-bit
        features, _ = features_of(images, extractor, mode)
        f0, f1 = features.double().chunk(2)
        out.append(((f0 - f1) ** 2).sum(1).cpu() / epsilon**2)
    generator.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


def ppl_value(lengths: Tensor) -> tuple[float, Tensor]:
    """The mean of the lengths between the 1st and 99th percentiles (NVlabs' filter), and the kept lengths."""
    d = lengths.double().numpy()
    lo = np.percentile(d, 1, method="lower")
    hi = np.percentile(d, 99, method="higher")
    kept = lengths[(lengths >= float(lo)) & (lengths <= float(hi))]
    return float(kept.mean()), kept


__all__ = ["path_lengths", "ppl_value", "supports_ppl"]
