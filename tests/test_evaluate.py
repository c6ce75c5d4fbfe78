"""Evaluation metrics: parity with torch-fidelity and with plain reference formulas on fixed features, and the
properties that catch swapped or broken metrics on real digits."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from aigc_lightning.datamodules import DigitsDataModule
from aigc_lightning.evaluation import metrics as M
from aigc_lightning.evaluation.extract import features_of, load_extractor, quantize

pytestmark = pytest.mark.usefixtures("one_thread")
fidelity = pytest.importorskip("torch_fidelity")


@pytest.fixture(scope="module")
def features() -> tuple[Tensor, Tensor]:
    """Two fixed feature sets from different Gaussians: (300, 16) real, (250, 16) generated."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(300, 16, generator=g), torch.randn(250, 16, generator=g) * 1.3 + 0.4


def test_fid_kid_is_equal_torch_fidelity_on_the_same_features(features):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = features
    theirs = fid_statistics_to_metric(
        fid_features_to_statistics(real), fid_features_to_statistics(fake), False
    )
    assert M.fid(real, fake) == pytest.approx(theirs["frechet_inception_distance"], rel=1e-3)
    kid = kid_features_to_metric(
        fake, real, kid_subsets=7, kid_subset_size=50, verbose=False, rng_seed=3,
        kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1,
    )  # fmt: skip
    assert M.kid_subsets(real, fake, 7, 50, seed=3).mean().item() == pytest.approx(
        kid["kernel_inception_distance_mean"], rel=1e-3
    )
    logits = fake[:, :10] * 3  # any (N, k) logits
    assert M.inception_score_splits(logits, 5, seed=11).mean().item() == pytest.approx(
        isc_features_to_metric(logits, 5, True, 11)["inception_score_mean"], rel=1e-3
    )


def test_fid_is_zero_for_identical_sets_and_reusable_on_subsets(features):
    real = features[0]
    assert abs(M.fid(real, real)) < 1e-6
    # a subset (one class for intra-class FID) goes through the same function: shifting every feature by 1
    # moves the mean by 1 in each of 16 dimensions and leaves the covariance: FID = 16
    assert M.fid(real[:100], real[:100] + 1) == pytest.approx(16.0, rel=1e-6)


def naive_manifold(real: Tensor, fake: Tensor, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    """Kynkäänniemi 2019 / Naeem 2020 written out with full distance matrices."""
    d_rr, d_ff, d_fr = torch.cdist(real, real), torch.cdist(fake, fake), torch.cdist(fake, real)
    r_pr = d_rr.sort(1).values[:, k_pr]  # column 0 is the point itself
    r_dc = d_rr.sort(1).values[:, k_dc]
    f_pr = d_ff.sort(1).values[:, k_pr]
    return {
        "precision": (d_fr <= r_pr[None]).any(1).double().mean().item(),
        "recall": (d_fr.T <= f_pr[None]).any(1).double().mean().item(),
        "density": ((d_fr <= r_dc[None]).sum(1).double() / k_dc).mean().item(),
        "coverage": (d_fr.min(0).values < r_dc).double().mean().item(),
    }


def test_precision_recall_density_coverage_equal_the_plain_formulas_in_any_chunking(features):
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    real, fake = features
    expected = naive_manifold(real, fake)
    for chunk in (64, 1000):  # blocks smaller than either set, and one block
        ours = {k: v.mean().item() for k, v in M.manifold_metrics(real, fake, chunk=chunk).items()}
        assert ours == pytest.approx(expected, abs=1e-12)
    precision, recall = calculate_precision_recall_full(fake, real, 3)  # torch-fidelity: generated first
    assert (ours["precision"], ours["recall"]) == pytest.approx((precision, recall), abs=1e-6)


def test_kth_neighbour_distances_keep_memory_to_blocks(features):
    real = features[0]
    full = torch.cdist(real, real).sort(1).values
    blocked = M.kth_neighbour_distances(real, (1, 3), chunk=7)
    assert torch.allclose(blocked[1], full[:, 1]) and torch.allclose(blocked[3], full[:, 3])


def test_confidence_intervals_contain_the_value_and_shrink_with_n(features):
    real, fake = features
    stats = M.feature_statistics(real)
    lo, hi = M.bootstrap_fid(stats, fake, replicates=10)
    assert lo < M.frechet_distance(*stats, *M.feature_statistics(fake)) < hi
    coin = torch.tensor([0.0, 1.0]).repeat(50)
    narrow = M.bootstrap_mean(coin.repeat(16), 200)
    wide = M.bootstrap_mean(coin, 200)
    assert wide[0] < 0.5 < wide[1] and narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2


# ----------------------------------------------------------------------------------------------------------
# Properties on real digits with the packaged features


@pytest.fixture(scope="module")
def digit_features() -> tuple[Tensor, Tensor, Tensor]:
    """Features of 1,000 digits (already 32 px: no resize), their labels, and features of the last 500 with noise."""
    torch.set_num_threads(1)
    dm = DigitsDataModule(image_size=32, val_fraction=0.0)
    dm.setup()
    x, y = dm.train_set.dataset.images[:1000].float() / 255, dm.train_set.dataset.labels[:1000]
    extractor = load_extractor("digits")
    noisy = quantize(x[500:] + 0.35 * torch.randn(x[500:].shape, generator=torch.Generator().manual_seed(0)))
    return features_of(quantize(x), extractor, "clean")[0], y, features_of(noisy, extractor, "clean")[0]


def test_properties_catch_swapped_or_broken_precision_and_recall(digit_features):
    f, y, noisy = digit_features
    real, held_out = f[:500], f[500:]

    def pr(fake: Tensor) -> tuple[float, float]:
        values = M.manifold_metrics(real, fake)
        return values["precision"].mean().item(), values["recall"].mean().item()

    p_same, r_same = pr(held_out)
    assert p_same > 0.6 and r_same > 0.6  # a held-out real set: high precision and recall
    half = held_out[y[500:] < 5]  # half the classes, every image still realistic
    p_half, r_half = pr(half)
    assert (
        p_half > p_same - 0.1 and r_half < r_same - 0.2
    )  # keeps precision, loses recall (swapped: the opposite)
    p_noisy, _ = pr(noisy)
    assert p_noisy < p_same - 0.2  # noisy images leave the real manifold: precision drops
