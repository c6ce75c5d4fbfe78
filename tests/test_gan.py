"""GAN: DCGAN nets, GAN losses and penalties, DiffAugment, the GAN LightningModule (tiny nets, CPU, seconds)."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aigc_lightning import losses
from aigc_lightning.augment import diff_augment
from aigc_lightning.errors import NonFiniteLossError, UserError
from aigc_lightning.gan_losses import Hinge, NonSaturating, WassersteinGP
from aigc_lightning.gan_regularizers import R1
from aigc_lightning.modules import GAN
from aigc_lightning.nets import Discriminator, Generator
from conftest import flat, gan_trainer

# ----------------------------------------------------------------------------------------------------------
# Helpers


def tiny_gan(size: int = 32, channels: int = 1, **kwargs) -> GAN:
    torch.manual_seed(0)
    g = Generator(latent_dim=8, channels=channels, image_size=size, width=4)
    d = Discriminator(channels=channels, image_size=size, width=4)
    kwargs.setdefault("mean_latent_samples", 256)
    kwargs.setdefault("bn_stat_batches", 2)
    return GAN(g, d, **kwargs)


def loader(size: int = 32, channels: int = 1, n: int = 32, batch_size: int = 8) -> DataLoader:
    x = torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return DataLoader(TensorDataset(x, torch.zeros(n)), batch_size=batch_size)


# ----------------------------------------------------------------------------------------------------------
# Networks


@pytest.mark.parametrize("size", [28, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes_and_backward(size, channels):
    g = Generator(latent_dim=8, channels=channels, image_size=size, width=2)
    d = Discriminator(channels=channels, image_size=size, width=2, norm="layer")
    x = g(torch.randn(3, 8))
    assert x.shape == (3, channels, size, size) and x.abs().max() <= 1
    logits = d(x)
    assert logits.shape == (3,)
    logits.sum().backward()
    assert all(p.grad is not None for p in g.parameters())


def test_dcgan_init_and_bad_size():
    g = Generator(width=32, image_size=64)
    w = g.net[0].weight
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
    with pytest.raises(UserError, match="image_size"):
        Discriminator(image_size=48)


def test_spectral_norm_discriminator_has_unit_operator_norms():
    torch.manual_seed(0)
    d = Discriminator(image_size=28, width=4, norm="none", spectral_norm=True)
    x = torch.randn(4, 1, 28, 28)
    for _ in range(30):  # one power iteration per training-mode forward
        d(x)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(hasattr(m, "parametrizations") for m in convs)
    norms = [torch.linalg.matrix_norm(m.weight.detach().flatten(1), 2).item() for m in convs]  # (out, in*k*k)
    assert all(abs(n - 1) < 1e-3 for n in norms), norms
    plain = Discriminator(image_size=28, width=4, norm="none")
    assert all(torch.linalg.matrix_norm(m.weight.flatten(1), 2) < 0.5 for m in plain.modules() if isinstance(m, nn.Conv2d))
    # R1 differentiates through the parametrization; its power-iteration vectors are checkpointed buffers
    assert losses.r1_penalty(d, x).shape == (4,)
    assert sum(k.endswith("_u") for k in d.state_dict()) == 3


# ----------------------------------------------------------------------------------------------------------
# Losses (hand-computed values)


def test_adversarial_losses_by_hand():
    real, fake = torch.tensor([0.0, math.log(3)]), torch.tensor([0.0, -math.log(3)])
    # softplus(-r) + softplus(f): sample 0: log2 + log2; sample 1: log(1 + 1/3) + log(1 + 1/3)
    expected = torch.tensor([2 * math.log(2), 2 * math.log(4 / 3)])
    torch.testing.assert_close(losses.d_nonsaturating(real, fake), expected)
    torch.testing.assert_close(losses.g_nonsaturating(fake), torch.tensor([math.log(2), math.log(4)]))
    r, f = torch.tensor([0.5, 2.0]), torch.tensor([-0.5, 0.25])
    torch.testing.assert_close(losses.d_hinge(r, f), torch.tensor([0.5 + 0.5, 0.0 + 1.25]))
    torch.testing.assert_close(losses.g_hinge(f), torch.tensor([0.5, -0.25]))
    torch.testing.assert_close(losses.d_wasserstein(r, f), torch.tensor([-1.0, -1.75]))
    torch.testing.assert_close(losses.g_wasserstein(f), torch.tensor([0.5, -0.25]))



def test_adversarial_loss_objects_are_the_functions_per_sample():
    r, f = torch.tensor([0.5, 2.0, -1.0]), torch.tensor([-0.5, 0.25, 3.0])
    games = {NonSaturating(): (losses.d_nonsaturating, losses.g_nonsaturating),
             Hinge(): (losses.d_hinge, losses.g_hinge), WassersteinGP(): (losses.d_wasserstein, losses.g_wasserstein)}
    for game, (d_fn, g_fn) in games.items():
        assert torch.equal(game.discriminator_loss(r, f), d_fn(r, f)) and game.discriminator_loss(r, f).shape == (3,)
        assert torch.equal(game.generator_loss(f), g_fn(f))
    d = nn.Sequential(nn.Flatten(), nn.Linear(4, 1), nn.Flatten(0))
    x, y = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    assert NonSaturating().penalty(d, x, y) is None and NonSaturating().penalty_weight == 0
    wgan = WassersteinGP(gp_weight=2.5)
    assert wgan.penalty_weight == 2.5 and wgan.penalty(d, x, y).shape == (3,)


def test_r1_schedule_and_scale():
    r1 = R1(gamma=4.0, every=3, lazy_correction=True)
    assert [r1.due(step) for step in range(7)] == [True, False, False, True, False, False, True]
    assert r1.scale(torch.tensor(1.5)).item() == 4.0 / 2 * 1.5 * 3  # γ/2 · penalty · k
    assert r1.correction_interval() == 3 and R1(gamma=4.0).correction_interval() is None
    off = R1(gamma=0.0, lazy_correction=True)
    assert not any(off.due(step) for step in range(20)) and off.correction_interval() is None


class Linear(nn.Module):
    """D(x) = <w, x>: its input gradient is w for every x."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


def test_r1_and_gradient_penalty_values_and_gradients():
    w = torch.zeros(1, 2, 2)
    w[0, 0, 0], w[0, 1, 1] = 3.0, 4.0  # ‖w‖ = 5
    d = Linear(w)
    x = torch.randn(4, 1, 2, 2)
    r1 = losses.r1_penalty(d, x)
    torch.testing.assert_close(r1, torch.full((4,), 25.0))
    r1.mean().backward()  # d‖w‖²/dw = 2w: the penalty's graph reaches D's parameters
    torch.testing.assert_close(d.w.grad, 2 * w)
    d.w.grad = None
    gp = losses.gradient_penalty(d, x, torch.randn(4, 1, 2, 2))
    torch.testing.assert_close(gp, torch.full((4,), 16.0))  # (5 - 1)²
    gp.mean().backward()  # d(‖w‖ − 1)²/dw = 2(‖w‖ − 1) w / ‖w‖
    torch.testing.assert_close(d.w.grad, 2 * 4 * w / 5)


def test_diff_augment_is_differentiable_and_random():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, "color,translation,cutout")
    assert y.shape == x.shape and not torch.equal(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x, ""), x)
    with pytest.raises(UserError, match="DiffAugment"):
        diff_augment(x, "rotate")


# ----------------------------------------------------------------------------------------------------------
# The LightningModule


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"loss": Hinge(), "r1": R1(gamma=1.0, every=2), "augment": "translation,cutout"},
        {"loss": WassersteinGP(), "n_critic": 2},
    ],
)
def test_fit_changes_both_networks(kwargs):
    model = tiny_gan(**kwargs)
    g0, d0 = flat(model.generator), flat(model.discriminator)
    n_critic = kwargs.get("n_critic", 1)
    gan_trainer(2, max_steps=2 * (n_critic + 1)).fit(model, loader())
    assert model.batches == 2 and model.d_steps == 2 * n_critic
    assert not torch.equal(flat(model.generator), g0)
    assert not torch.equal(flat(model.discriminator), d0)


def test_d_step_leaves_g_unchanged_and_vice_versa():
    model = tiny_gan()
    gan_trainer(1).fit(model, loader())  # attaches trainer and optimizers
    x = next(iter(loader()))[0]
    g0, d0 = flat(model.generator), flat(model.discriminator)
    model.discriminator_step(x)
    assert torch.equal(flat(model.generator), g0) and not torch.equal(flat(model.discriminator), d0)
    g1, d1 = flat(model.generator), flat(model.discriminator)
    model.discriminator.zero_grad(set_to_none=True)
    model.generator_step(8, x.device)
    assert torch.equal(flat(model.discriminator), d1) and not torch.equal(flat(model.generator), g1)
    # The frozen network's gradients stay unset: requires_grad was toggled off, not just skipped by the step.
    assert all(p.grad is None for p in model.discriminator.parameters())


def test_ema_update_follows_the_formula():
    model = tiny_gan(ema_decay=0.9, ema_warmup=10)
    ema0 = flat(model.generator_ema)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    model.batches = 0  # ramp-up: decay = min(0.9, 1 / 10) = 0.1
    model.update_ema()
    torch.testing.assert_close(flat(model.generator_ema), 0.1 * ema0 + 0.9 * flat(model.generator))
    model.batches = 1000  # decay = 0.9
    ema1, g = flat(model.generator_ema), flat(model.generator)
    model.update_ema()
    torch.testing.assert_close(flat(model.generator_ema), 0.9 * ema1 + 0.1 * g)
    assert all(not p.requires_grad for p in model.generator_ema.parameters())


def test_checkpoint_round_trip_keeps_ema_counters_and_samples(tmp_path):
    model = tiny_gan(r1=R1(gamma=1.0, every=4))
    t = gan_trainer(3)
    t.fit(model, loader())
    before = model.sample(6, seed=11)
    t.save_checkpoint(tmp_path / "gan.ckpt")
    nets = {"generator": Generator(latent_dim=8, image_size=32, width=4), "discriminator": Discriminator(width=4)}
    loaded = GAN.load_from_checkpoint(tmp_path / "gan.ckpt", **nets)  # a Python-built GAN: its nets passed again
    assert (loaded.batches, loaded.d_steps) == (3, 3)
    assert torch.equal(flat(loaded.generator_ema), flat(model.generator_ema))
    assert not torch.equal(flat(loaded.generator_ema), flat(loaded.generator))
    torch.testing.assert_close(loaded.sample(6, seed=11), before, rtol=0, atol=1e-6)


def test_sample_is_seeded_and_per_sample():
    model = tiny_gan()
    gan_trainer(1).fit(model, loader())
    a, b = model.sample(5, seed=7), model.sample(5, seed=7)
    assert a.shape == (5, 1, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)
    torch.testing.assert_close(model.sample(2, seed=9), a[2:4], rtol=0, atol=1e-6)  # seed 7 + i gives image i
    assert not torch.allclose(a[0], a[1])
    out = model.predict_step((torch.tensor([0, 1]), torch.tensor([7, 8])), 0)
    assert out["names"] == ["000000", "000001"]
    torch.testing.assert_close(out["images"], a[:2], rtol=0, atol=1e-6)


def test_truncation_moves_samples_toward_the_mean():
    model = tiny_gan()
    gan_trainer(1).fit(model, loader())
    mean_image = model.generate(model.mean_latent()[None], truncation_psi=1.0)  # G(mean latent)
    dist = {}
    for psi in (1.0, 0.7, 0.3, 0.0):
        x = model.sample(16, seed=0, truncation_psi=psi)
        dist[psi] = (x - mean_image).flatten(1).norm(dim=1).mean().item()
    assert dist[1.0] > dist[0.7] > dist[0.3] > dist[0.0]
    assert dist[0.0] < 1e-5  # psi = 0: every sample is G(mean)
    assert model.mean_latent().abs().max() < 0.3  # estimated from 256 N(0, I) draws
    model.hparams.truncation_psi = 0.0  # the module argument is what predict uses
    out = model.predict_step((torch.tensor([0]), torch.tensor([5])), 0)["images"]
    torch.testing.assert_close(out, mean_image, rtol=0, atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_steps_are_finite(precision):
    model = tiny_gan(r1=R1(gamma=1.0, every=1))
    g0, d0 = flat(model.generator), flat(model.discriminator)
    dtypes = set()
    model.discriminator.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
    if precision == "16-mixed":
        # Trainer(precision="16-mixed") on CPU silently falls back to bf16; the plugin itself runs fp16 autocast
        # with a GradScaler on CPU. A small initial scale, so the first steps are not all skipped as overflows.
        plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=256.0))
        t = gan_trainer(3, plugins=[plugin])
    else:
        t = gan_trainer(3, precision=precision)
    t.fit(model, loader())
    logged = t.callback_metrics
    assert all(math.isfinite(v.item()) for v in logged.values()), logged
    assert {"train/d_loss", "train/g_loss", "train/r1", "train/d_real", "train/d_fake"} <= set(logged)
    # Adversarial passes ran in half precision, the R1 pass in fp32 (autocast off inside the penalty).
    assert {torch.float16 if precision == "16-mixed" else torch.bfloat16, torch.float32} <= dtypes
    for now, before in ((flat(model.generator), g0), (flat(model.discriminator), d0)):
        assert torch.isfinite(now).all() and not torch.equal(now, before)


def test_nan_loss_stops_before_the_update():
    model = tiny_gan()
    x = torch.full((8, 1, 32, 32), float("nan"))
    g0, d0 = flat(model.generator), flat(model.discriminator)
    with pytest.raises(NonFiniteLossError, match="train/d_loss"):
        gan_trainer(1).fit(model, DataLoader(TensorDataset(x, torch.zeros(8)), batch_size=8))
    assert torch.equal(flat(model.discriminator), d0) and torch.equal(flat(model.generator), g0)


def test_bad_arguments_raise_user_errors():
    with pytest.raises(UserError, match="gan_losses"):
        tiny_gan(loss="hinge")  # the game is an object
    with pytest.raises(UserError, match="n_critic"):
        tiny_gan(n_critic=0)
