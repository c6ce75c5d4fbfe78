"""Sample-quality metrics of feature sets: FID, KID, IS, precision/recall, density/coverage, with bootstrap
confidence intervals. Pure tensor functions of features (N, d) or logits (N, k): they work on any subset (a
class, a split), on any device, and know nothing about images or Lightning.

Conventions follow the reference implementations so that numbers can be compared with them:

- FID (Heusel et al. 2017): ``|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` with unbiased covariances in
  float64; the trace of the square root is computed from the eigenvalues of ``S_r^(1/2) S_g S_r^(1/2)`` (the same
  eigenvalues as ``S_r S_g``, which torch-fidelity uses, but of a symmetric matrix: stable and real).
- KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel ``(x.y / d + 1)^3`` averaged over
  ``subsets`` random subsets, the subsets drawn as torch-fidelity draws them (``numpy.random.RandomState(seed)``).
- IS (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` averaged over ``splits`` of a seeded permutation
  (torch-fidelity's order).
- Precision/recall (Kynkäänniemi et al. 2019, k = 3 as NVlabs' ``pr50k3``): a generated sample is precise when it
  lies in the k-NN ball of some real sample; a real sample is recalled when it lies in the k-NN ball of some
  generated sample.
- Density/coverage (Naeem et al. 2020, k = 5): density counts the real k-NN balls each generated sample falls in
  (divided by k); coverage is the share of real samples whose ball holds at least one generated sample.

The k-NN searches go through ``(chunk, chunk)`` distance blocks: memory is O(chunk^2 + N), not O(N^2), so 50k x
50k features fit on any GPU or CPU.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# ----------------------------------------------------------------------------------------------------------
# FID


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (d,) and unbiased covariance (d, d) of features (N, d), in float64."""
    f = features.double()
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def sqrt_psd(sigma: Tensor) -> Tensor:
    """The symmetric square root of a positive semi-definite matrix (negative rounding-error eigenvalues → 0)."""
    values, vectors = torch.linalg.eigh(sigma)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(
    mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor, sqrt_sigma1: Tensor | None = None
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (float64). ``sqrt_sigma1``: ``sqrt_psd(sigma1)``
    when it is already known (the reference side of a bootstrap)."""
    root = sqrt_psd(sigma1.double()) if sqrt_sigma1 is None else sqrt_sigma1
    middle = root @ sigma2.double() @ root  # same eigenvalues as sigma1 @ sigma2, but symmetric
    tr_covmean = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()
    diff = mu1.double() - mu2.double()
    return float(diff @ diff + sigma1.double().trace() + sigma2.double().trace() - 2 * tr_covmean)


def fid(real: Tensor, fake: Tensor) -> float:
    """FID between two feature sets (N, d); any subset (one class: intra-class FID) works the same."""
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


# ----------------------------------------------------------------------------------------------------------
# KID and IS


def mmd2_polynomial(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 between equal-size sets x, y (m, d) with the kernel ``(a.b / d + 1)^3``."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    off_diagonal = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return off_diagonal - 2 * k_xy.sum() / (m * m)


def kid_subsets(
    real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 2020
) -> Tensor:
    """MMD^2 of each of ``subsets`` random subset pairs (subsets,), float64; the subset size is lowered to the
    smaller set. Subsets are drawn like torch-fidelity's ``kid_features_to_metric`` (generated first)."""
    size = min(subset_size, len(real), len(fake))
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        g = fake[torch.from_numpy(rng.choice(len(fake), size, replace=False)).to(fake.device)]
        r = real[torch.from_numpy(rng.choice(len(real), size, replace=False)).to(real.device)]
        values.append(mmd2_polynomial(g.double(), r.double()))
    return torch.stack(values).cpu()


def inception_score_splits(logits: Tensor, splits: int = 10, seed: int | None = 2020) -> Tensor:
    """IS of each of ``splits`` consecutive splits (splits,), float64, after a seeded permutation (``seed=None``:
    the given order); torch-fidelity's ``isc_features_to_metric`` with its defaults."""
    if seed is not None:
        logits = logits[
            torch.from_numpy(np.random.RandomState(seed).permutation(len(logits))).to(logits.device)
        ]
    log_p = logits.double().log_softmax(1)
    n, scores = len(logits), []
    for i in range(splits):
        part = log_p[i * n // splits : (i + 1) * n // splits]  # (n / splits, k)
        log_marginal = part.exp().mean(0, keepdim=True).log()
        scores.append((part.exp() * (part - log_marginal)).sum(1).mean().exp())
    return torch.stack(scores).cpu()


# ----------------------------------------------------------------------------------------------------------
# k-NN metrics in (chunk, chunk) blocks


def _blocks(n: int, chunk: int):
    return [(i, min(i + chunk, n)) for i in range(0, n, chunk)]


def kth_neighbour_distances(x: Tensor, ks: tuple[int, ...], chunk: int = 2048) -> dict[int, Tensor]:
    """For each row of x (N, d): the distance to its k-th nearest other row, for every k in ``ks`` ({k: (N,)}).
    Keeps the k_max + 1 smallest distances per row while sweeping over column blocks (the row itself is one)."""
    keep = max(ks) + 1
    out = torch.empty(len(x), keep, device=x.device)
    for a, b in _blocks(len(x), chunk):
        best = torch.full((b - a, 0), float("inf"), device=x.device)
        for c, e in _blocks(len(x), chunk):
            dist = torch.cdist(x[a:b], x[c:e])  # (rows, cols)
            best = torch.cat([best, dist], 1).topk(min(keep, best.shape[1] + e - c), 1, largest=False).values
        out[a:b] = best
    return {k: out[:, k] for k in ks}


def manifold_metrics(
    real: Tensor, fake: Tensor, k_pr: int = 3, k_dc: int = 5, chunk: int = 2048
) -> dict[str, Tensor]:
    """Per-sample indicators of precision, recall, density and coverage; their means are the metrics.

    Returns ``precision`` (fake,) in {0, 1}, ``density`` (fake,) = balls containing the sample / k_dc, ``recall``
    (real,) in {0, 1}, ``coverage`` (real,) in {0, 1}. Features are compared in float32 on their device.
    """
    real, fake = real.float(), fake.float().to(real.device)
    r_real = kth_neighbour_distances(real, (k_pr, k_dc), chunk)
    r_fake = kth_neighbour_distances(fake, (k_pr,), chunk)[k_pr]
    precise = torch.zeros(len(fake), dtype=torch.bool, device=real.device)
    density = torch.zeros(len(fake), dtype=torch.long, device=real.device)  # ball counts
    recalled = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    nearest_fake = torch.full((len(real),), float("inf"), device=real.device)
    for a, b in _blocks(len(fake), chunk):
        for c, e in _blocks(len(real), chunk):
            dist = torch.cdist(fake[a:b], real[c:e])  # (fake rows, real cols)
            precise[a:b] |= (dist <= r_real[k_pr][None, c:e]).any(1)
            density[a:b] += (dist <= r_real[k_dc][None, c:e]).sum(1)
            recalled[c:e] |= (dist <= r_fake[a:b, None]).any(0)
            nearest_fake[c:e] = torch.minimum(nearest_fake[c:e], dist.min(0).values)
    return {
        "precision": precise.double().cpu(),
        "recall": recalled.double().cpu(),
        "density": density.double().cpu() / k_dc,
        "coverage": (nearest_fake < r_real[k_dc]).double().cpu(),
    }


# ----------------------------------------------------------------------------------------------------------
# Confidence intervals


def percentile_interval(values: Tensor, level: float = 0.95) -> list[float]:
    """The central ``level`` percentile interval of bootstrap replicates."""
    v = values.double()
    lo, hi = torch.quantile(v, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=v.dtype)).tolist()
    return [lo, hi]


def bootstrap_mean(per_sample: Tensor, replicates: int = 1000, seed: int = 0) -> list[float]:
    """95 % interval of the mean of per-sample values, resampling the samples with replacement."""
    g = torch.Generator().manual_seed(seed)
    means = []
    for start in range(0, replicates, 50):  # 50 resamples at a time: memory O(50 N), not O(replicates N)
        idx = torch.randint(len(per_sample), (min(50, replicates - start), len(per_sample)), generator=g)
        means.append(per_sample[idx].mean(1))
    return percentile_interval(torch.cat(means))


def normal_interval(value: float, replicates: Tensor) -> list[float]:
    """``value ± 1.96 SD`` of bootstrap replicates: for statistics that resampling biases (a resample with repeated
    images has a smaller covariance, so resampled FIDs sit above the estimate), the percentile interval would not
    even contain the estimate; the spread of the replicates still measures its sampling error."""
    half = 1.96 * float(replicates.double().std())
    return [value - half, value + half]


def bootstrap_fid(
    real: tuple[Tensor, Tensor], fake: Tensor, replicates: int = 20, seed: int = 0
) -> list[float]:
    """95 % interval of FID from bootstrap resamples of the generated features (``normal_interval``); the
    reference statistics ``real = (mu, sigma)`` stay fixed (they may come from a statistics file)."""
    g = torch.Generator().manual_seed(seed)
    root = sqrt_psd(real[1].double())
    values = []
    for _ in range(replicates):
        idx = torch.randint(len(fake), (len(fake),), generator=g).to(fake.device)
        values.append(frechet_distance(real[0], real[1], *feature_statistics(fake[idx]), sqrt_sigma1=root))
    value = frechet_distance(real[0], real[1], *feature_statistics(fake), sqrt_sigma1=root)
    lo, hi = normal_interval(value, torch.tensor(values))
    return [max(lo, 0.0), hi]  # a distance: never below 0


def bootstrap_is(logits: Tensor, splits: int, replicates: int = 100, seed: int = 0) -> list[float]:
    """95 % interval of IS from bootstrap resamples of the generated logits (``normal_interval``)."""
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(replicates):
        idx = torch.randint(len(logits), (len(logits),), generator=g).to(logits.device)
        values.append(inception_score_splits(logits[idx], splits, seed=None).mean())
    return normal_interval(float(inception_score_splits(logits, splits, seed).mean()), torch.stack(values))


__all__ = [
    "bootstrap_fid",
    "bootstrap_is",
    "bootstrap_mean",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "inception_score_splits",
    "kid_subsets",
    "kth_neighbour_distances",
    "manifold_metrics",
    "mmd2_polynomial",
    "normal_interval",
    "percentile_interval",
    "sqrt_psd",
]
