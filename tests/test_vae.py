"""VAE: ELBO pieces against closed forms, the IW bound, warm-up, binarisation, sampling, checkpoints, configs."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from torch import Tensor, nn
from torch.distributions import Bernoulli, Normal, kl_divergence
from torchvision.io import decode_image

import aigc_lightning.modules.vae as vae_module
from aigc_lightning.cli import AigcCLI
from aigc_lightning.datamodules import DigitsDataModule
from aigc_lightning.datamodules.datasets import binarized
from aigc_lightning.datamodules.seeds import SeedDataModule
from aigc_lightning.errors import UserError
from aigc_lightning.losses import (
    bernoulli_nll,
    gaussian_nll,
    importance_weighted_bound,
    iwae_loss,
    kl_normal,
    log_normal_diag,
)
from aigc_lightning.modules import VAE
from aigc_lightning.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from conftest import ROOT, write_pngs


def tiny_vae(image_size: int = 8, channels: int = 1, **kwargs) -> VAE:
    enc = MLPEncoder(channels, image_size, hidden_dim=32, latent_dim=4)
    dec = MLPDecoder(channels, image_size, hidden_dim=32, latent_dim=4)
    return VAE(enc, dec, **kwargs)


def tiny_trainer(tmp_path: Path, **kwargs) -> Trainer:
    args = {
        "accelerator": "cpu",
        "default_root_dir": str(tmp_path),
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return Trainer(**{**args, **kwargs})


def digits(**kwargs) -> DigitsDataModule:
    # 8 px: the digits' own size, so no resize at setup (each setup of upsampled digits costs seconds)
    return DigitsDataModule(**{"image_size": 8, "batch_size": 32, "binarize": True, **kwargs})


# ---------------------------------------------------------------------------------------------------------
# Losses: closed forms


def test_kl_of_standard_normal_is_zero_and_matches_torch_distributions():
    assert torch.equal(kl_normal(torch.zeros(3, 5), torch.zeros(3, 5)), torch.zeros(3))
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl_normal(mu, logvar), expected, atol=1e-5)
    # mu = 1, σ = 1: ½ per latent, summed (not averaged) over the 6 latents.
    assert torch.allclose(kl_normal(torch.ones(2, 6), torch.zeros(2, 6)), torch.full((2,), 3.0))


def test_free_bits_floor_each_latent():
    kl = kl_normal(torch.zeros(2, 5), torch.zeros(2, 5), free_bits=0.25)
    assert torch.allclose(kl, torch.full((2,), 1.25))


def test_bernoulli_nll_of_known_logits_summed_over_pixels():
    x = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])  # (1, 1, 2, 2)
    assert torch.allclose(bernoulli_nll(torch.zeros_like(x), x), torch.tensor([4 * math.log(2)]))
    logits = torch.full_like(x, math.log(3))  # p = 0.75
    expected = -(math.log(0.25) + 3 * math.log(0.75))
    assert torch.allclose(bernoulli_nll(logits, x), torch.tensor([expected]))
    logits = torch.randn(3, 2, 4, 4)
    target = torch.randint(0, 2, (3, 2, 4, 4)).float()
    assert torch.allclose(
        bernoulli_nll(logits, target), -Bernoulli(logits=logits).log_prob(target).sum((1, 2, 3))
    )


def test_gaussian_nll_matches_torch_distributions_fixed_and_learned():
    mean, x = torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4)
    expected = -Normal(mean, 0.1).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(gaussian_nll(mean, x, math.log(0.1)), expected, rtol=1e-5)
    log_std = torch.tensor(-1.0, requires_grad=True)
    nll = gaussian_nll(mean, x, log_std)
    assert torch.allclose(nll, -Normal(mean, math.exp(-1.0)).log_prob(x).sum((1, 2, 3)), rtol=1e-5)
    nll.sum().backward()
    assert log_std.grad is not None and torch.isfinite(log_std.grad)


def test_log_normal_diag_matches_torch_distributions():
    z, mu, logvar = torch.randn(7, 3), torch.randn(7, 3), torch.randn(7, 3)
    expected = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    assert torch.allclose(log_normal_diag(z, mu, logvar), expected, atol=1e-5)
    assert torch.allclose(log_normal_diag(z), Normal(0.0, 1.0).log_prob(z).sum(-1), atol=1e-5)


def test_iw_bound_is_above_the_mean_log_weight_and_equals_it_at_k1():
    log_w = torch.randn(50, 8) * 3 - 100
    assert torch.all(importance_weighted_bound(log_w) >= log_w.mean(0))  # Jensen
    assert torch.allclose(importance_weighted_bound(log_w[:1]), log_w[0])
    # Large magnitudes do not overflow (log-sum-exp in float64).
    assert torch.isfinite(importance_weighted_bound(torch.full((1000, 2), -5000.0))).all()


def test_iw_bound_of_a_model_is_above_the_elbo_and_tightens_with_k():
    torch.manual_seed(0)
    model = tiny_vae(image_size=8)
    x = torch.rand(64, 1, 8, 8).bernoulli()
    with torch.no_grad():
        elbo = -torch.stack([sum(model.elbo_terms(x)[:2]) for _ in range(20)]).mean()
        bounds = [model.log_likelihood_iw(x, k).mean() for k in (1, 10, 200)]
    assert abs(bounds[0] - elbo) < 1.0  # k = 1 is the ELBO (one sample)
    assert elbo < bounds[1] < bounds[2]


def test_iw_bound_does_not_depend_on_the_chunking():
    model = tiny_vae(iw_batch_images=8)  # 8 images per decoder pass: chunks of 1 sample for a batch of 8
    x = torch.rand(8, 1, 8, 8).bernoulli()
    torch.manual_seed(1)
    chunked = model.log_likelihood_iw(x, 12)
    model.hparams.iw_batch_images = 10_000
    torch.manual_seed(1)
    whole = model.log_likelihood_iw(x, 12)
    assert chunked.shape == (8,) and torch.isfinite(chunked).all()
    assert (chunked - whole).abs().max() < 5.0  # different noise, same quantity


def test_iwae_loss_averages_weights_per_image_and_is_the_elbo_at_k1():
    log_px_z, log_pz, log_qz = torch.randn(6, 3) - 50, torch.randn(6, 3), torch.randn(6, 3)
    log_w = log_px_z + log_pz - log_qz
    loss = iwae_loss(log_px_z, log_pz, log_qz)
    assert loss.shape == (3,)
    # −log (1/K Σ_k w_k) over the K samples of each image (a column), not over the batch
    expected = -(torch.logsumexp(log_w, 0) - math.log(6))
    assert torch.allclose(loss, expected, atol=1e-4)
    log_px_z2 = log_px_z.clone()
    log_px_z2[:, 1] += 10
    changed = iwae_loss(log_px_z2, log_pz, log_qz)
    assert changed[0] == loss[0] and changed[2] == loss[2] and changed[1] < loss[1] - 9
    assert torch.allclose(iwae_loss(log_px_z[:1], log_pz[:1], log_qz[:1]), -log_w[0])  # K = 1: the ELBO
    # β weights only the prior / posterior ratio (KL warm-up): β = 0 leaves the likelihood alone.
    assert torch.allclose(
        iwae_loss(log_px_z, log_pz, log_qz, beta=0.0), -(torch.logsumexp(log_px_z, 0) - math.log(6))
    )


def test_iwae_training_objective_is_per_image_and_tighter_than_the_elbo():
    torch.manual_seed(0)
    model = tiny_vae(image_size=8, train_importance_samples=5)
    x = torch.rand(4, 1, 8, 8).bernoulli().requires_grad_()
    loss, recon, kl = model.training_objective(x, beta=1.0)
    assert loss.shape == recon.shape == kl.shape == (4,)
    loss[0].backward()  # image 0's loss does not depend on the other images
    assert x.grad[0].abs().sum() > 0 and torch.all(x.grad[1:] == 0)
    x = torch.rand(64, 1, 8, 8).bernoulli()
    with torch.no_grad():
        iwae = torch.stack([model.training_objective(x, 1.0)[0].mean() for _ in range(10)]).mean()
        model.hparams.train_importance_samples = 1
        elbo = torch.stack([model.training_objective(x, 1.0)[0].mean() for _ in range(10)]).mean()
    assert iwae < elbo - 0.1  # the k = 5 bound is tighter: a lower loss for the same model


# ---------------------------------------------------------------------------------------------------------
# Networks


@pytest.mark.parametrize("image_size", [8, 16, 32])
def test_conv_nets_shapes_and_backward(image_size):
    enc, dec = (
        ConvEncoder(3, image_size, width=4, latent_dim=5),
        ConvDecoder(3, image_size, width=4, latent_dim=5),
    )
    mu, logvar = enc(torch.rand(2, 3, image_size, image_size))
    assert mu.shape == logvar.shape == (2, 5)
    out = dec(mu)
    assert out.shape == (2, 3, image_size, image_size)
    (out.sum() + logvar.sum()).backward()
    assert all(p.grad is not None for p in [*enc.parameters(), *dec.parameters()])


def test_mlp_nets_keep_the_seed_layer_names_and_any_shape():
    enc, dec = MLPEncoder(3, 12), MLPDecoder(3, 12)
    assert enc.fc1.in_features == 3 * 12 * 12 and enc.fc21.out_features == enc.fc22.out_features == 20
    assert dec.fc3.in_features == 20 and dec.fc4.out_features == 3 * 12 * 12
    assert dec(enc(torch.rand(2, 3, 12, 12))[0]).shape == (2, 3, 12, 12)


def test_bad_shapes_are_user_errors():
    with pytest.raises(UserError, match="power of two"):
        ConvEncoder(1, 28)
    with pytest.raises(UserError, match="latent_dim"):
        VAE(MLPEncoder(latent_dim=4), MLPDecoder(latent_dim=5))
    with pytest.raises(UserError, match="train_importance_samples"):
        tiny_vae(train_importance_samples=0)
    with pytest.raises(UserError, match="free_bits"):
        tiny_vae(train_importance_samples=2, free_bits=0.5)


# ---------------------------------------------------------------------------------------------------------
# Module: targets, warm-up, logvar clamp, sampling, training, checkpoints


def test_binarize_statistics():
    dm = digits(image_size=8, batch_size=2000, val_fraction=0.2)
    dm.setup("fit")
    x1, _ = next(iter(dm.train_dataloader()))
    x2, _ = next(iter(dm.train_dataloader()))
    assert set(x1.unique().tolist()) == {-1.0, 1.0}
    grey = DigitsDataModule(image_size=8, batch_size=2000, val_fraction=0.2)
    grey.setup("fit")
    g, _ = next(iter(grey.val_dataloader()))
    v1, _ = next(iter(dm.val_dataloader()))
    v2, _ = next(iter(dm.val_dataloader()))
    assert torch.equal(v1, v2)  # fixed for validation
    # Fixed binarisation is a Bernoulli draw of the grey level: on average it matches the [0, 1] intensity.
    assert abs(((v1 + 1) / 2).mean() - ((g + 1) / 2).mean()) < 0.01
    # Dynamic for training: a fresh draw every time the data is served (shuffled, so compare the means).
    assert not torch.equal(x1, x2)


def test_binarized_is_a_bernoulli_draw_of_each_pixel():
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).repeat(40_000, 1)  # (40000, 5)
    x = binarized(p, torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) == {0.0, 1.0}
    # the mean of 40,000 draws is within 4 standard errors (<= 0.01) of each pixel's probability, exactly at 0 and 1
    assert torch.allclose(x.mean(0), p[0], atol=0.01)
    assert x[:, 0].max() == 0 and x[:, -1].min() == 1
    assert torch.equal(x, binarized(p, torch.Generator().manual_seed(0)))  # a seeded generator fixes the draw
    assert not torch.equal(x, binarized(p))


class TargetSpy:
    """Wraps ``bernoulli_nll`` in the VAE module to record every reconstruction target it is given."""

    def __init__(self) -> None:
        self.seen: list[Tensor] = []

    def __call__(self, logits: Tensor, x01: Tensor) -> Tensor:
        self.seen.append(x01.detach().clone())
        return bernoulli_nll(logits, x01)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> dict:
    """One small fit shared by the training, warm-up, target and checkpoint tests (each Trainer costs seconds).

    2 epochs x 8 batches of 32 binarised 8-px digits at Adam lr 1e-2 (few steps), validation on 2 batches before and
    after; β = 2 with a 32-batch warm-up, so β is still rising at the end; checkpoints on, no logger.
    """
    root = tmp_path_factory.mktemp("fitted")
    torch.manual_seed(0)
    adam = functools.partial(torch.optim.Adam, lr=1e-2)
    model = tiny_vae(beta=2.0, warmup_batches=32, val_importance_samples=4, optimizer=adam)
    trainer = tiny_trainer(root, max_epochs=2, limit_train_batches=8, limit_val_batches=2, logger=False,
                           log_every_n_steps=5)  # fmt: skip
    dm = digits()
    spy = TargetSpy()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vae_module, "bernoulli_nll", spy)
        before = trainer.validate(model, dm, verbose=False)[0]
        trainer.fit(model, dm)
    return {
        "model": model,
        "trainer": trainer,
        "before": before,
        "after": dict(trainer.callback_metrics),
        "targets": torch.cat(spy.seen),
        "ckpt": next((root / "checkpoints").glob("*.ckpt")),
    }


def test_reconstruction_targets_lie_in_0_1(fitted, tmp_path, monkeypatch):
    targets = fitted["targets"]  # binarised data: training and validation targets
    assert set(targets.unique().tolist()) == {0.0, 1.0}
    spy = TargetSpy()
    monkeypatch.setattr(vae_module, "bernoulli_nll", spy)
    tiny_trainer(tmp_path, max_steps=1, limit_val_batches=1, logger=False, enable_checkpointing=False).fit(
        tiny_vae(val_importance_samples=2), digits(binarize=False)
    )
    targets = torch.cat(spy.seen)
    assert targets.min() >= 0 and targets.max() <= 1
    assert targets.max() > 0.9  # grey data: not all squashed below 0.5 either, the full [0, 1] range is used


def test_kl_warmup_is_linear_over_batches_and_counted_in_training(fitted):
    model = tiny_vae(beta=2.0, warmup_batches=10)
    betas = []
    for seen in (0, 5, 10, 25):
        model.batches = seen
        betas.append(model.current_beta())
    assert betas == [0.0, 1.0, 2.0, 2.0]
    assert tiny_vae().current_beta() == 1.0  # no warm-up: β from the start
    # In training: one count per batch (2 epochs x 8); per-batch values are logged on the batches the logger
    # records (every 5th here), so the last logged β is that of the 15th batch (14 batches seen before it).
    assert fitted["model"].batches == 16
    assert fitted["after"]["train/beta"] == pytest.approx(2.0 * 14 / 32)


def test_encode_clamps_logvar_so_nothing_overflows():
    model = tiny_vae()
    with torch.no_grad():
        model.encoder.fc22.bias.fill_(1e4)
    x = torch.rand(2, 1, 8, 8).bernoulli()
    _, logvar = model.encode(x)
    assert logvar.max() <= vae_module.LOGVAR_MAX
    recon, kl, _, _ = model.elbo_terms(x)
    assert torch.isfinite(recon).all() and torch.isfinite(kl).all()


def test_sample_is_reproducible_by_seed_and_matches_predict(tmp_path):
    model = tiny_vae()
    a, b = model.sample(6, seed=7), model.sample(6, seed=7)
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    assert torch.allclose(model.sample(2, seed=10)[1], a[4], atol=1e-6)  # sample i comes from seed + i
    assert not torch.allclose(model.sample(6, seed=8), a)
    out = tiny_trainer(tmp_path, logger=False).predict(model, SeedDataModule(6, 7, batch_size=4))
    assert torch.allclose(torch.cat([o["images"] for o in out]), a, atol=1e-6)
    assert out[1]["names"] == ["000004", "000005"]


def test_training_lowers_the_loss_and_logs_metrics(fitted):
    before, after = fitted["before"], fitted["after"]
    assert after["val/nelbo"] < before["val/nelbo"] - 5
    for key in (
        "val/recon",
        "val/kl",
        "val/bpd",
        "val/nll_iw",
        "val/bpd_iw",
        "val/active_units",
        "train/nelbo",
        "train/nelbo_epoch",
        "train/bpd_epoch",
    ):
        assert torch.isfinite(torch.as_tensor(after[key])), key
    assert after["val/nelbo"] == pytest.approx(float(after["val/recon"] + after["val/kl"]), rel=1e-5)
    assert after["val/nll_iw"] <= after["val/nelbo"] + 1.0
    assert after["val/bpd"] == pytest.approx(float(after["val/nelbo"]) / (64 * math.log(2)), rel=1e-5)
    assert 0 <= after["val/active_units"] <= 4


def test_gaussian_likelihood_learns_sigma_and_tests_with_iw(tmp_path):
    torch.manual_seed(0)
    enc, dec = ConvEncoder(3, 8, width=4, latent_dim=4), ConvDecoder(3, 8, width=4, latent_dim=4)
    model = VAE(enc, dec, likelihood="gaussian", gaussian_std=0.5, test_importance_samples=3)
    trainer = tiny_trainer(
        tmp_path,
        max_steps=4,
        limit_val_batches=0,
        limit_test_batches=2,
        logger=False,
        enable_checkpointing=False,
    )
    dm = digits(channels=3, binarize=False)
    trainer.fit(model, dm)
    assert model.log_std.requires_grad and model.log_std.item() != pytest.approx(math.log(0.5))
    result = trainer.test(model, dm, verbose=False)[0]
    assert math.isfinite(result["test/nll_iw"]) and math.isfinite(result["test/bpd_iw"])
    s = model.sample(3, seed=0)
    assert s.shape == (3, 3, 8, 8) and 0 <= s.min() and s.max() <= 1


def test_bf16_mixed_trains_the_iwae_objective_with_finite_float32_metrics(tmp_path):
    model = tiny_vae(val_importance_samples=2, train_importance_samples=3)
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1, precision="bf16-mixed",
                           logger=False, enable_checkpointing=False)  # fmt: skip
    trainer.fit(model, digits())
    assert model.batches == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert torch.isfinite(trainer.callback_metrics["val/nll_iw"])
    assert model.sample(2, seed=0).dtype == torch.float32


def test_checkpoint_round_trip_with_load_from_checkpoint(fitted):
    model = fitted["model"]
    torch.load(fitted["ckpt"])  # torch's default, weights_only=True: plain hyper-parameters only
    # built in Python, its networks are not in the hyper-parameters (CLI runs keep their configs): pass them again
    fresh = tiny_vae()  # same architecture, other weights: the checkpoint's must replace them
    loaded = VAE.load_from_checkpoint(fitted["ckpt"], encoder=fresh.encoder, decoder=fresh.decoder)
    assert loaded.batches == 16 and loaded.current_beta() == model.current_beta()
    for (name, p), q in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), name
    assert torch.equal(loaded.sample(4, seed=3), model.sample(4, seed=3))


# ---------------------------------------------------------------------------------------------------------
# Configs and the contract's commands


@pytest.fixture()
def png_folder(tmp_path) -> Path:
    """Twelve 20-px RGB noise PNGs, flat (the configs' own fixture: test_cli's is grey)."""
    return write_pngs(tmp_path / "pngs", n=12, size=20, channels=3)


def fit_args(config: str, tmp_path: Path) -> list[str]:
    return [
        "--config", str(ROOT / "configs/vae" / config),
        "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
    ]  # fmt: skip


def test_vae_digits_fit_test_predict_commands(tmp_path):
    # 8 px (the digits' own size: no resize) keeps the config's 784-400-20 nets small. k = 5 for test, set at fit:
    # test and predict read it from the checkpoint (a --model.* flag costs the CLI a second parse).
    args = fit_args("vae_digits.yaml", tmp_path) + ["--data.batch_size", "16", "--data.image_size", "8"]
    cli = AigcCLI(args=["fit", *args, "--model.init_args.test_importance_samples", "5"])
    # the data's image size reaches the networks (the config says 28)
    assert isinstance(cli.model, VAE) and cli.model.encoder.fc1.in_features == 8 * 8
    ckpt = tmp_path / "runs/lightning_logs/version_0/checkpoints/last.ckpt"
    assert ckpt.is_file()
    test = AigcCLI(args=["test", *args, "--ckpt_path", str(ckpt)])
    assert test.model.hparams.test_importance_samples == 5
    assert math.isfinite(float(test.trainer.callback_metrics["test/nll_iw"]))
    out = tmp_path / "samples"
    AigcCLI(args=["predict", *args, "--ckpt_path", str(ckpt), "--output_dir", str(out), "--num_samples", "5",
                  "--seed", "3"])  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(5)] + ["grid.png"]
    # The CLI's checkpoint holds the config, so the Python API loads it without arguments.
    loaded = VAE.load_from_checkpoint(ckpt)
    written = decode_image(str(out / "000002.png")).float() / 255
    assert torch.allclose(written, loaded.sample(3, seed=3)[2], atol=1 / 255)


# No --model.* flags in the CLI tests: each costs the CLI a second full parse; the configs' nets are cheap at 8-20 px.
@pytest.mark.parametrize(
    ("config", "channels", "image_size"), [("vae_mlp_mnist.yaml", 1, 20), ("conv_vae_celeba64.yaml", 3, 16)]
)
def test_download_configs_run_on_an_image_folder(config, channels, image_size, png_folder, tmp_path):
    args = fit_args(config, tmp_path) + [
        "--data", "aigc_lightning.datamodules.ImageFolderDataModule", "--data.root", str(png_folder),
        "--data.channels", str(channels), "--data.image_size", str(image_size), "--data.batch_size", "4",
        "--data.num_workers", "0",
    ]  # fmt: skip
    cli = AigcCLI(args=["fit", *args])
    assert cli.model.decoder.image_shape == (channels, image_size, image_size)
    assert cli.trainer.global_step == 2


class FirstBatch(Callback):
    """Records the first training batch's images and the decoder's output bias as training starts."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.images = batch[0].clone()
            self.bias = pl_module.decoder.fc4.bias.detach().clone()


def test_output_bias_from_data_starts_at_the_mean_training_image_and_leaves_the_run_rng_alone(tmp_path):
    def run(init: bool) -> FirstBatch:
        seed_everything(0)
        spy = FirstBatch()
        dm = digits(val_fraction=0.2)
        model = tiny_vae(output_bias_from_data=init)
        tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0, logger=False, callbacks=[spy]).fit(model, dm)
        spy.grey = dm.train_set.dataset.images[dm.train_set.indices].float().div(255).mean(0).flatten()
        return spy

    plain, init = run(False), run(True)
    assert torch.equal(plain.images, init.images)  # the peek at 16 batches drew none of the run's random numbers
    # p = sigmoid(bias) is the mean of 16 x 32 binarised training digits: within ~4 standard errors of the grey
    # level (<= 0.09) everywhere, and far from the untrained decoder's p ~ 0.5
    p = torch.sigmoid(init.bias)
    assert (p - init.grey).abs().max() < 0.09
    assert (torch.sigmoid(plain.bias) - init.grey).abs().max() > 0.3


def test_output_bias_from_data_needs_a_decoder_that_supports_it(tmp_path):
    decoder = nn.Sequential(nn.Linear(4, 64), nn.Unflatten(1, (1, 8, 8)))  # no init_output_bias
    decoder.latent_dim = 4
    model = VAE(MLPEncoder(1, 8, 8, 4), decoder, output_bias_from_data=True)
    with pytest.raises(UserError, match="init_output_bias"):
        tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0, logger=False).fit(model, digits())


def test_one_cycle_schedule_per_step_gets_the_runs_length(tmp_path):
    model = tiny_vae(
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        lr_scheduler=functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=1e-2, total_steps=None,
                                       epochs=None, cycle_momentum=False),
        lr_scheduler_interval="step",
    )  # fmt: skip
    lrs: list[float] = []

    class LRs(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = tiny_trainer(tmp_path, max_epochs=2, limit_train_batches=5, limit_val_batches=0, logger=False,
                           callbacks=[LRs()])  # fmt: skip
    trainer.fit(model, digits())
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == 10  # 2 epochs x 5 batches
    # one learning rate per batch: warm-up from max_lr / 25 to max_lr (30 % of the run), then down to its floor
    assert len(set(lrs)) == 10 and lrs[0] == pytest.approx(1e-2 / 25)
    assert max(lrs) == lrs[2] == pytest.approx(1e-2) and lrs[-1] < 1e-2 / 1000


def test_warmup_cosine_scales_each_groups_own_lr_and_resumes():
    from aigc_lightning.schedules import WarmupCosine

    def opt():
        a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
        return torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 1.0}])

    o = opt()
    s = WarmupCosine(o, warmup_steps=4, total_steps=12, final_factor=0.1)
    lrs = []
    for _ in range(14):
        lrs.append([g["lr"] for g in o.param_groups])
        o.step()
        s.step()
    factors = [b for _, b in lrs]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # linear warm-up to each group's own lr
    assert factors[8] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half-way down
    assert factors[12:] == pytest.approx([0.1, 0.1])  # the floor at total_steps and after
    assert all(a == pytest.approx(0.1 * b) for a, b in lrs)  # the groups keep their ratio
    resumed = WarmupCosine(opt(), warmup_steps=4, total_steps=12, final_factor=0.1)
    resumed.load_state_dict({**s.state_dict()})
    assert resumed.get_last_lr() == s.get_last_lr() and resumed.last_epoch == 14
    with pytest.raises(UserError, match="total_steps"):
        WarmupCosine(opt())
    short = WarmupCosine(opt(), warmup_steps=300, total_steps=3)  # a smoke-test run shorter than the warm-up
    assert [short.factor(t) for t in range(3)] == pytest.approx([0.5, 1.0, 1.0])  # warmed up by its last step


def test_encoder_lr_scale_puts_the_encoder_in_its_own_slower_group(tmp_path):
    from aigc_lightning.schedules import WarmupCosine

    model = tiny_vae(
        optimizer=functools.partial(torch.optim.Adam, lr=1e-2),
        encoder_lr_scale=0.25,
        lr_scheduler=functools.partial(WarmupCosine, warmup_steps=2, total_steps=None),
        lr_scheduler_interval="step",
    )
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=4, limit_val_batches=0, logger=False)
    trainer.fit(model, digits())
    encoder, rest = trainer.optimizers[0].param_groups
    assert {id(p) for p in encoder["params"]} == {id(p) for p in model.encoder.parameters()}
    assert len(rest["params"]) == len(list(model.decoder.parameters()))
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == 4
    assert encoder["initial_lr"] == pytest.approx(0.25e-2) and rest["initial_lr"] == pytest.approx(1e-2)
