"""StyleGAN2 training in the GAN module: mixing, lazy path length, ADA, lazy Adam correction, truncation around
w_avg, noise modes, bf16, the pretrained-weights predict path and the digits config (tiny nets, CPU, seconds)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.io import decode_image

from aigc_lightning.augment import AdaController, augment_with_probability, diff_augment
from aigc_lightning.cli import AigcCLI, main
from aigc_lightning.errors import UserError
from aigc_lightning.gan_latents import StyleLatents
from aigc_lightning.gan_regularizers import R1, PathLength
from aigc_lightning.lazy import apply_lazy_correction, lazy_ratio
from aigc_lightning.modules import GAN
from aigc_lightning.nets import Generator, StyleGAN2Discriminator, StyleGAN2Generator
from aigc_lightning.nets.rosinality import save_rosinality
from aigc_lightning.pixels import to_unit
from aigc_lightning.seeds import randn_from_seeds
from conftest import ROOT, child_env, flat, gan_trainer, write_pngs


def adam(params):
    return torch.optim.Adam(params, lr=0.0025, betas=(0.0, 0.99))


def tiny_nets(size: int = 16, channels: int = 1) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator]:
    torch.manual_seed(0)
    g = StyleGAN2Generator(image_size=size, channels=channels, latent_dim=16, n_mlp=2, channel_max=8)
    d = StyleGAN2Discriminator(image_size=size, channels=channels, channel_max=8)
    return g, d


def tiny_sg2(**kwargs) -> GAN:
    g, d = tiny_nets()
    kwargs.setdefault("latents", StyleLatents())
    return GAN(g, d, optimizer_g=adam, optimizer_d=adam, **kwargs)


def loader(n: int = 16, batch_size: int = 4, size: int = 16) -> DataLoader:
    x = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return DataLoader(TensorDataset(x, torch.zeros(n)), batch_size=batch_size)


def full() -> dict:
    """Every StyleGAN2 piece on, at short intervals (fresh objects: they carry state)."""
    return {"latents": StyleLatents(mixing_prob=0.9), "path_length": PathLength(2.0, every=2, lazy_correction=True),
            "r1": R1(1.0, every=2, lazy_correction=True), "augment": "translation,cutout",
            "ada": AdaController(target=0.6, interval=1)}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# Training


def test_stylegan2_module_trains_both_nets_and_tracks_w_avg():
    model = tiny_sg2(**full())
    g0, d0, w0 = flat(model.generator), flat(model.discriminator), model.generator.w_avg.clone()
    t = gan_trainer(3)
    t.fit(model, loader())
    assert model.batches == 3 and model.d_steps == 3
    assert not torch.equal(flat(model.generator), g0) and not torch.equal(flat(model.discriminator), d0)
    assert not torch.equal(model.generator.w_avg, w0)  # the mapping's EMA of w moved while training
    assert torch.equal(model.generator_ema.w_avg, model.generator.w_avg)  # the EMA generator copies buffers
    assert model.path_length.mean > 0 and math.isfinite(model.path_length.mean)
    logged = t.callback_metrics
    assert {"train/pl_penalty", "train/pl_mean", "train/aug_p", "train/r1"} <= set(logged)
    assert all(math.isfinite(v.item()) for v in logged.values()), logged


def test_path_length_term_is_finite_at_batch_two():
    # batch 2 with shrink 2: the path-length pass sees a single sample (NVlabs issue #210: NaNs at tiny batches)
    model = tiny_sg2(path_length=PathLength(2.0, every=1, batch_shrink=2), latents=StyleLatents(mixing_prob=0.9))
    t = gan_trainer(3)
    t.fit(model, loader(n=6, batch_size=2))
    assert math.isfinite(t.callback_metrics["train/pl_penalty"].item()) and model.path_length.mean > 0
    assert torch.isfinite(flat(model.generator)).all()


def test_lazy_regularisation_corrects_lr_and_betas():
    model = tiny_sg2(path_length=PathLength(2.0, every=4, lazy_correction=True), r1=R1(1.0, 16, lazy_correction=True))
    gan_trainer(1).fit(model, loader())
    opt_g, opt_d = (opt.optimizer for opt in model.optimizers())
    assert lazy_ratio(4) == 0.8 and lazy_ratio(16) == 16 / 17
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.0025 * 0.8)  # NVlabs: lr 0.0025 → 0.002
    assert opt_g.param_groups[0]["betas"] == pytest.approx((0.0, 0.99**0.8))
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.0025 * 16 / 17)
    assert opt_d.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    # off by default: DCGAN configs keep their optimizers as written
    plain = tiny_sg2(path_length=PathLength(2.0), r1=R1(1.0))
    gan_trainer(1).fit(plain, loader())
    assert plain.optimizers()[0].optimizer.param_groups[0]["lr"] == 0.0025
    sgd = apply_lazy_correction(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 1)
    assert sgd.param_groups[0]["lr"] == 0.5 and "betas" not in sgd.param_groups[0]


class SignedD(nn.Module):
    """A fake discriminator: logit ``sign`` · (1 + 0·x) for every image, with one parameter to optimise."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.sign, self.w = sign, nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.sign * (1 + 0 * x.flatten(1).sum(1)) + self.w * 0


def test_ada_p_follows_the_sign_of_real_logits():
    ada = AdaController(target=0.6, ada_kimg=1, interval=2)
    ada.accumulate(torch.ones(10))
    ada.adjust(1)  # not an adjustment batch
    assert ada.p == 0 and ada.count == 10
    ada.accumulate(torch.tensor([1.0, -1.0]))  # r_t = 10/12 > 0.6: D is overconfident on reals, p rises
    ada.adjust(2)
    assert ada.p == pytest.approx(12 / 1000) and ada.count == 0
    ada.accumulate(-torch.ones(100))
    ada.adjust(4)
    assert ada.p == 0  # lowered, clamped at 0
    # in the module: a D that is always sure of the reals raises p by batch_size / (ada_kimg · 1000) per batch
    for sign, expected in ((1.0, 3 * 4 / 1000), (-1.0, 0.0)):
        g, _ = tiny_nets()
        ada = AdaController(target=0.6, ada_kimg=1, interval=1)
        model = GAN(g, SignedD(sign), optimizer_g=adam, augment="translation", ada=ada)
        gan_trainer(3).fit(model, loader())
        assert model.ada.p == pytest.approx(expected)


def test_augment_with_probability():
    x = torch.rand(64, 1, 8, 8)
    assert torch.equal(augment_with_probability(x, ("cutout",), 0.0), x)
    torch.manual_seed(3)
    a = augment_with_probability(x, ("cutout",), 1.0)
    torch.manual_seed(3)
    assert torch.equal(a, diff_augment(x, ("cutout",)))
    half = augment_with_probability(x, ("cutout",), 0.5)
    unchanged = (half == x).flatten(1).all(1).float().mean()
    assert 0.2 < unchanged < 0.8


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_with_path_length_is_finite(precision):
    model = tiny_sg2(**full())
    g0 = flat(model.generator)
    if precision == "16-mixed":  # on CPU only the plugin runs fp16 autocast (Trainer falls back to bf16)
        plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=256.0))
        t = gan_trainer(3, plugins=[plugin])
    else:
        t = gan_trainer(3, precision=precision)
    t.fit(model, loader())
    assert all(math.isfinite(v.item()) for v in t.callback_metrics.values()), t.callback_metrics
    assert torch.isfinite(flat(model.generator)).all() and not torch.equal(flat(model.generator), g0)


def test_bad_stylegan2_options():
    g, d = tiny_nets()
    with pytest.raises(UserError, match="model.ada"):
        GAN(g, d, ada=AdaController())
    with pytest.raises(UserError, match="path_length"):  # no ws without the StyleGAN2 latent path
        GAN(g, d, path_length=PathLength())
    with pytest.raises(UserError, match="StyleLatents needs a StyleGAN2Generator"):
        GAN(Generator(latent_dim=8, image_size=32, width=4), d, latents=StyleLatents())


# ----------------------------------------------------------------------------------------------------------
# Sampling: truncation around w_avg, noise modes


def test_truncation_centres_on_w_avg_and_noise_const_is_deterministic():
    model = tiny_sg2()
    gan_trainer(2).fit(model, loader())
    g = model.generator_ema
    with torch.no_grad():
        for m in g.modules():
            if hasattr(m, "noise_strength"):
                m.noise_strength.fill_(0.5)  # zero at init: make noise visible
    model._ema_stale = True
    w_avg = g.w_avg.clone()
    a, b = model.sample(4, seed=3), model.sample(4, seed=3)
    assert torch.equal(a, b)  # const noise: an image depends on its seed only
    assert torch.equal(g.w_avg, w_avg)  # sampling never moves the truncation centre
    assert torch.equal(model.mean_latent(), w_avg)
    psi0 = model.sample(4, seed=3, truncation_psi=0.0)
    centre = to_unit(g.synthesis(w_avg[None].expand(1, -1), noise_mode="const")).clamp(0, 1)
    torch.testing.assert_close(psi0, centre.expand(4, -1, -1, -1), rtol=0, atol=1e-6)
    assert not torch.allclose(model.sample(4, seed=3, truncation_psi=0.7), a, atol=1e-4)
    model.hparams.noise_mode = "random"
    assert not torch.equal(model.sample(4, seed=3), model.sample(4, seed=3))
    model.hparams.noise_mode = "none"
    assert torch.equal(model.sample(4, seed=3), model.sample(4, seed=3)) and not torch.equal(model.sample(4, seed=3), a)


# ----------------------------------------------------------------------------------------------------------
# CLI: the pretrained-weights predict path and the digits config


def rosinality_file(path: Path, with_d: bool = True) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator]:
    torch.manual_seed(5)
    g = StyleGAN2Generator(image_size=16, channels=3, latent_dim=16, n_mlp=2, channel_max=16)
    d = StyleGAN2Discriminator(image_size=16, channels=3, channel_max=16)
    with torch.no_grad():
        g.w_avg.normal_()
        for m in g.modules():
            if hasattr(m, "noise_strength"):
                m.noise_strength.fill_(0.3)
    with pytest.warns(UserWarning, match="widths"):  # not a width table rosinality's own code builds
        save_rosinality(path, g, d if with_d else None)
    return g.eval(), d


def predict_pretrained(tmp_path: Path, pt: Path, psi: str, out: str) -> Path:
    main([
        "predict", "--config", str(ROOT / "configs/gan/stylegan2_pretrained.yaml"), "--model.generator_checkpoint",
        str(pt), "--model.truncation_psi", psi, "--num_samples", "3", "--seed", "7", "--output_dir",
        str(tmp_path / out), "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    return tmp_path / out


def pngs(folder: Path) -> torch.Tensor:
    return torch.stack([decode_image(str(folder / f"{i:06d}.png")).float() / 255 for i in range(3)])


def test_pretrained_config_predicts_truncated_seeded_pngs(tmp_path):
    g, d = rosinality_file(tmp_path / "g.pt")
    a = pngs(predict_pretrained(tmp_path, tmp_path / "g.pt", "0.7", "a"))
    again = pngs(predict_pretrained(tmp_path, tmp_path / "g.pt", "0.7", "again"))
    one = pngs(predict_pretrained(tmp_path, tmp_path / "g.pt", "1.0", "one"))
    assert a.shape == (3, 3, 16, 16) and (tmp_path / "a/grid.png").exists()
    assert torch.equal(a, again) and not torch.equal(a, one)
    z = randn_from_seeds(torch.arange(7, 10), (16,), torch.device("cpu"))
    with torch.no_grad():
        expected = to_unit(g(z, truncation_psi=0.7, noise_mode="const")).clamp(0, 1)
    torch.testing.assert_close(a, expected, rtol=0, atol=1 / 255 + 1e-6)
    # the module takes the file's discriminator too, and the file's architecture over the configured one
    model = GAN(StyleGAN2Generator(image_size=8, latent_dim=8), StyleGAN2Discriminator(image_size=8),
                latents=StyleLatents(), generator_checkpoint=str(tmp_path / "g.pt"))  # fmt: skip
    assert model.generator.image_size == 16 and model.generator.training
    assert torch.equal(flat(model.discriminator), flat(d)) and torch.equal(model.generator_ema.w_avg, g.w_avg)


def test_pretrained_config_missing_file_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict_pretrained(tmp_path, tmp_path / "nope.pt", "0.7", "out")
    assert "nope.pt does not exist" in str(exit_info.value) and "\n" not in str(exit_info.value)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="cannot read"):
        predict_pretrained(tmp_path, tmp_path / "bad.pt", "0.7", "out")


TINY_DIGITS = [
    "--model.init_args.generator.init_args.channel_max", "8", "--model.init_args.generator.init_args.latent_dim", "16",
    "--model.init_args.discriminator.init_args.channel_max", "8",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]  # fmt: skip


def test_digits_config_runs_on_generated_images(tmp_path):
    images = write_pngs(tmp_path / "images", n=8, size=32, channels=1)
    cli = AigcCLI(args=[
        "fit", "--config", str(ROOT / "configs/gan/stylegan2_digits.yaml"), "--trainer.fast_dev_run", "1",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.accelerator", "cpu", *TINY_DIGITS,
        "--data", "aigc_lightning.datamodules.ImageFolderDataModule", "--data.root", str(images),
        "--data.image_size", "32", "--data.channels", "1", "--data.batch_size", "4",
    ])  # fmt: skip
    assert cli.trainer.state.finished and cli.model.batches == 1 and cli.trainer.global_step == 2
    assert cli.model.generator.image_shape == (1, 32, 32)
    assert cli.model.sample(2, seed=0).shape == (2, 1, 32, 32)


def test_digits_fit_then_predict_with_truncation(tmp_path):
    main([
        "fit", "--config", str(ROOT / "configs/gan/stylegan2_digits.yaml"), "--trainer.max_steps", "4",
        "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", str(tmp_path), *TINY_DIGITS,
        "--trainer.callbacks", "[]", "--data.batch_size", "8",
    ])  # fmt: skip
    ckpt = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"

    def predict(out: str, *extra: str) -> Path:
        main([
            "predict", "--config", str(ROOT / "configs/gan/stylegan2_digits.yaml"), "--ckpt_path", str(ckpt),
            *TINY_DIGITS, "--trainer.callbacks", "[]", "--output_dir", str(tmp_path / out), "--num_samples", "3",
            "--seed", "42", *extra,
        ])  # fmt: skip
        return tmp_path / out

    a, again = pngs(predict("a", "--model.truncation_psi", "0.7")), pngs(predict("b", "--model.truncation_psi", "0.7"))
    one = pngs(predict("one"))
    assert torch.equal(a, again) and not torch.equal(a, one)
    model = GAN.load_from_checkpoint(ckpt)
    expected = model.sample(3, seed=42, truncation_psi=0.7)
    torch.testing.assert_close(a[:, :1], expected, rtol=0, atol=1 / 255 + 1e-6)


# ----------------------------------------------------------------------------------------------------------
# DDP: path length and mixing on, 2 CPU processes, ranks end identical


def test_two_process_ddp_with_path_length_and_mixing_ends_identical(tmp_path):
    env = child_env()
    env["OMP_NUM_THREADS"] = "1"
    callback = f'{{"class_path": "test_gan_ddp.SaveRankState", "init_args": {{"out_dir": "{tmp_path}"}}}}'
    cmd = [
        sys.executable, "-m", "aigc_lightning", "fit", "--config", str(ROOT / "configs/gan/stylegan2_digits.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_steps", "6", "--trainer.limit_val_batches", "0", "--trainer.default_root_dir",
        str(tmp_path / "logs"), "--trainer.callbacks", "[]", f"--trainer.callbacks+={callback}", *TINY_DIGITS,
        "--model.path_length.init_args.every", "1", "--model.r1.init_args.every", "2",
        "--model.ada.init_args.interval", "1", "--model.ada.init_args.ada_kimg", "1",
        "--images.log_images_every_n_batches", "2", "--data.batch_size", "8",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["info"]["world_size"] == 2 and r0["info"]["batches"] == r1["info"]["batches"] == 3
    assert r0["info"]["first_batch_sum"] != r1["info"]["first_batch_sum"]  # different shards
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key
    assert not torch.equal(r0["state"]["generator.w_avg"], torch.zeros_like(r0["state"]["generator.w_avg"]))
    ckpt = torch.load(tmp_path / "logs/lightning_logs/version_0/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["counters"]["pl_mean"] > 0 and "aug_p" in ckpt["counters"]


def test_conv_clamp_bounds_activations_and_is_inert_when_large():
    g, d = tiny_nets()
    g_clamped = StyleGAN2Generator(image_size=16, channels=1, latent_dim=16, n_mlp=2, channel_max=8, conv_clamp=256)
    d_clamped = StyleGAN2Discriminator(image_size=16, channels=1, channel_max=8, conv_clamp=256)
    g_clamped.load_state_dict(g.state_dict())
    d_clamped.load_state_dict(d.state_dict())
    z = torch.randn(4, 16)
    x = g(z, noise_mode="const")
    assert torch.equal(g_clamped(z, noise_mode="const"), x) and torch.equal(d_clamped(x), d(x))
    g_tight = StyleGAN2Generator(image_size=16, channels=1, latent_dim=16, n_mlp=2, channel_max=8, conv_clamp=0.01)
    g_tight.load_state_dict(g.state_dict())
    y = g_tight(z, noise_mode="const")
    assert y.abs().max() <= 0.01 * 3 + 1e-6  # three ToRGB outputs summed (4 → 8 → 16 px), each clamped
    assert x.abs().max() > 0.05


@pytest.mark.parametrize("config", ["stylegan2_celeba64", "stylegan2_ffhq256"])
def test_gpu_configs_run_on_generated_images(tmp_path, config):
    images = write_pngs(tmp_path / "images", n=8, size=16, channels=3)
    cli = AigcCLI(args=[
        "fit", "--config", str(ROOT / f"configs/gan/{config}.yaml"), "--trainer.fast_dev_run", "1",
        "--trainer.devices", "1", "--trainer.strategy", "auto", "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(tmp_path), *TINY_DIGITS, "--model.generator.init_args.n_mlp", "2",
        "--data", "aigc_lightning.datamodules.ImageFolderDataModule", "--data.root", str(images),
        "--data.image_size", "16", "--data.channels", "3", "--data.batch_size", "4",
    ])  # fmt: skip
    assert cli.trainer.state.finished and cli.model.batches == 1 and cli.trainer.precision == "bf16-mixed"
    assert cli.model.generator.image_shape == (3, 16, 16) and cli.model.path_length.mean > 0
