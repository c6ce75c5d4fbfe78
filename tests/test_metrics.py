"""FID / KID / IS: the packaged domain extractor, the metric values, and the callback inside tiny Trainer runs."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn

from aigc_lightning.callbacks.metrics import GenerativeMetrics, evaluate_images, rank_slice
from aigc_lightning.datamodules import DigitsDataModule
from aigc_lightning.errors import UserError
from aigc_lightning.modules.classifier import export_classifier
from aigc_lightning.nets.features import DomainFeatures, InceptionFeatures, load_classifier
from aigc_lightning.seeds import randn_from_seeds


@pytest.fixture(scope="module")
def digits() -> tuple[Tensor, Tensor]:
    """All 1,797 digits at 32 px in [0, 1] (the extractor's training size) and their labels."""
    dm = DigitsDataModule(image_size=32, val_fraction=0.0)
    dm.setup()
    base = dm.train_set.dataset
    return (base.images.float() / 255), base.labels


def test_extractor_loads_from_package_and_classifies_digits(digits):
    x, y = digits
    extractor = DomainFeatures()  # no path: aigc_lightning/assets/digits_classifier.pt via importlib.resources
    with torch.no_grad():
        features, logits = extractor(x[:300])
    assert features.shape == (300, extractor.num_features) and logits.shape == (300, 10)
    # trained weights, not a fresh init: the shipped classifier recognises the digits
    assert (logits.argmax(1) == y[:300]).float().mean() > 0.95
    extractor.train()
    assert not extractor.net.training  # stays in eval mode (BatchNorm running statistics)


def test_extractor_resizes_and_converts_channels(digits):
    x = digits[0][:8]
    extractor = DomainFeatures()
    rgb64 = torch.nn.functional.interpolate(x, size=64, mode="bilinear", antialias=True).expand(-1, 3, -1, -1)
    with torch.no_grad():
        f32, _ = extractor(x)
        f64, _ = extractor(rgb64)
    assert f64.shape == f32.shape
    assert torch.allclose(f32, f64, atol=0.5 * f32.abs().max().item())  # same digits → similar features


def test_fid_identical_sets_is_zero_and_different_sets_positive(digits):
    x, y = digits
    kw = {"kid_subset_size": 150, "is_splits": 2}
    same = evaluate_images(x[:300], x[:300], **kw)
    assert abs(same["fid"]) < 1e-3
    halves = evaluate_images(x[:400], x[400:800], **kw)  # two samples of the same distribution
    low, high = x[:800][y[:800] < 5], x[:800][y[:800] >= 5]
    classes = evaluate_images(low, high, **kw)  # digits 0-4 against 5-9
    noise = evaluate_images(low, torch.rand(300, 1, 32, 32), **kw)
    assert 0 < halves["fid"] < classes["fid"] < noise["fid"]
    assert halves["kid"] < classes["kid"] < noise["kid"]


def test_kid_and_is_values(digits):
    x, y = digits
    values = evaluate_images(x[:300], x[300:600], kid_subset_size=100, is_splits=3)
    assert set(values) == {"fid", "kid", "is"} and all(math.isfinite(v) for v in values.values())
    # IS: exp(E KL(p(y|x) || p(y))) lies in [1, number of classes]; ten balanced classes score high, one class ~1
    assert 7 < values["is"] <= 10
    assert 1 <= evaluate_images(x[:300], x[y == 3][:150], kid_subset_size=100, is_splits=3)["is"] < 1.5


def test_metric_shapes_from_torchmetrics(digits):
    metrics = GenerativeMetrics(num_samples=64, kid_subset_size=32, is_splits=2)
    x = digits[0][:64]
    metrics.add_images(x, real=True)
    metrics.add_images(x.flip(-1), real=False)
    kid_mean, kid_std = metrics.kid.compute()
    is_mean, is_std = metrics.inception_score.compute()
    assert kid_mean.shape == kid_std.shape == is_mean.shape == is_std.shape == ()
    assert metrics.fid.compute().shape == ()


def test_export_and_reload_round_trip(tmp_path, digits):
    net = load_classifier()
    ckpt = tmp_path / "weights.pt"
    torch.save({"init_args": {"width": 16, "feature_dim": 64}, "state_dict": net.state_dict()}, ckpt)
    x = digits[0][:4] * 2 - 1
    with torch.no_grad():
        assert torch.equal(load_classifier(str(ckpt)).features(x), net.features(x))
    with pytest.raises(UserError, match="does not exist"):
        load_classifier(str(tmp_path / "missing.ckpt"))
    with pytest.raises(UserError, match="does not exist"):
        export_classifier(str(tmp_path / "missing.ckpt"), str(tmp_path / "out.pt"))


def test_inception_offline_is_a_user_error():
    # here torch-fidelity is absent or its weights cannot be read: either way one message naming the fix
    with pytest.raises(UserError, match="torch-fidelity|weights"):
        InceptionFeatures(weights_path="/nonexistent/weights-inception-2015-12-05-6726825d.pth")


# ----------------------------------------------------------------------------------------------------------
# The callback in a Trainer


class TinyGenerator(LightningModule):
    """A linear 'generator' with the GAN/VAE interface the callback uses: ``sample(n, seed)`` in [0, 1]."""

    def __init__(self, latent_dim: int = 8, image_size: int = 16) -> None:
        super().__init__()
        self.latent_dim, self.image_size = latent_dim, image_size
        self.net = nn.Linear(latent_dim, image_size * image_size)
        self.rng_changed_in_validation = False

    def sample(self, n: int, seed: int = 0) -> Tensor:
        z = randn_from_seeds(torch.arange(seed, seed + n), (self.latent_dim,), self.device)
        return torch.sigmoid(self.net(z)).view(n, 1, self.image_size, self.image_size)  # (n, 1, H, W)

    def training_step(self, batch, batch_idx):
        x = (batch[0] + 1) / 2
        return (self.sample(len(x), seed=batch_idx) - x).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self._rng = torch.get_rng_state()

    def on_validation_epoch_end(self):
        # runs after the callbacks' hook: the metrics must not have consumed training's random numbers
        if not torch.equal(self._rng, torch.get_rng_state()):
            self.rng_changed_in_validation = True

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path, callback, **kwargs) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        limit_train_batches=2,
        logger=CSVLogger(tmp_path),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def test_callback_logs_finite_metrics_at_its_cadence_and_caches_real_features(tmp_path):
    torch.manual_seed(0)
    model = TinyGenerator()
    data = DigitsDataModule(image_size=16, batch_size=64)  # 180 validation images
    metrics = GenerativeMetrics(every_n_epochs=2, num_samples=96, batch_size=40, is_splits=2)
    trainer = _trainer(tmp_path, metrics)
    trainer.fit(model, data)

    with open(trainer.logger.experiment.metrics_file_path) as f:
        rows = list(csv.DictReader(f))
    fid_rows = [r for r in rows if r.get("val/fid")]
    assert [int(r["epoch"]) for r in fid_rows] == [1]  # epoch 0 skipped (every 2nd), none in the sanity check
    for key in ("val/fid", "val/kid", "val/is"):
        assert math.isfinite(float(fid_rows[0][key]))
    assert float(fid_rows[0]["val/fid"]) > 0
    assert metrics.num_real == 180 and metrics.fid.real_features_num_samples == 180
    assert not model.rng_changed_in_validation

    # validate again: real features come from the cache (not fed twice), same weights and seeds → same FID
    fid_fit = trainer.callback_metrics["val/fid"].item()
    trainer.validate(model, data, verbose=False)
    assert metrics.num_real == 180 and metrics.fid.real_features_num_samples == 180
    assert trainer.callback_metrics["val/fid"].item() == pytest.approx(fid_fit, rel=1e-6)


def test_callback_refuses_models_it_cannot_evaluate(tmp_path):
    class NoSample(LightningModule):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return self.p.sum()

        def validation_step(self, batch, batch_idx):
            pass

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(UserError, match="sample"):
        _trainer(tmp_path, GenerativeMetrics(num_samples=8)).fit(NoSample(), DigitsDataModule(image_size=16))
    with pytest.raises(UserError, match="every_n_epochs"):
        GenerativeMetrics(every_n_epochs=0)


@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_ranks_generate_disjoint_slices_covering_all_seeds(world_size):
    slices = [rank_slice(100, r, world_size) for r in range(world_size)]
    assert [i for first, last in slices for i in range(first, last)] == list(range(100))


def _validate_fid(tmp_path, devices: int) -> float:
    torch.manual_seed(0)
    model = TinyGenerator()
    metrics = GenerativeMetrics(num_samples=150, batch_size=50, kid_subset_size=50, is_splits=2)
    strategy = "ddp_spawn" if devices > 1 else "auto"
    trainer = Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        logger=False,
        callbacks=[metrics],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.validate(model, DigitsDataModule(image_size=16, batch_size=45), verbose=False)
    return trainer.callback_metrics["val/fid"].item()


@pytest.mark.slow  # ~1 min of process start-up on 2 CPU cores; the split is covered by the rank_slice test
def test_ddp_every_rank_computes_the_single_process_value(tmp_path):
    # 2 processes on gloo: each feeds half the real images and generates half the seeds; the synced FID must be
    # the single-process one (a rank-0-only compute would hang; a wrong split would change the value). Not
    # bit-exact: each process runs its convolutions with its own thread count.
    single = _validate_fid(tmp_path / "one", 1)
    double = _validate_fid(tmp_path / "two", 2)
    assert math.isfinite(double) and double == pytest.approx(single, rel=1e-3)
