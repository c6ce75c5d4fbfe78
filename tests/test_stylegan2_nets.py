"""StyleGAN2 networks at tiny widths: shapes, noise modes, truncation, w_avg, style mixing, FIR filters, rosinality
round trips, gradients, bf16, and the path-length / R1 terms against closed forms.

Parity with rosinality's own model.py needs its checkout: python -m bench parity (docs/stylegan2.md).
"""

from __future__ import annotations

import pytest
import torch

from aigc_lightning.errors import UserError
from aigc_lightning.losses import path_length_penalty, path_lengths, r1_penalty
from aigc_lightning.nets import StyleGAN2Discriminator, StyleGAN2Generator
from aigc_lightning.nets.rosinality import save_rosinality
from aigc_lightning.nets.stylegan2 import channel_table, mix_styles
from aigc_lightning.nets.stylegan2_layers import (
    EqualConv2d,
    Upsample2d,
    fir_kernel,
    minibatch_stddev,
    upfirdn2d,
)

TINY = {"latent_dim": 16, "n_mlp": 2, "channel_max": 8}


def tiny_g(size: int = 16, channels: int = 3, seed: int = 0) -> StyleGAN2Generator:
    """A tiny generator whose zero-initialised tensors (noise strengths, biases, w_avg) are random too."""
    torch.manual_seed(seed)
    g = StyleGAN2Generator(size, channels, **TINY)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith(("noise_strength", "bias")):
                p.normal_(0, 0.5)
        g.w_avg.normal_()
    return g.eval()


def tiny_d(size: int = 16, channels: int = 3) -> StyleGAN2Discriminator:
    torch.manual_seed(1)
    d = StyleGAN2Discriminator(size, channels, channel_max=8)
    with torch.no_grad():
        for name, p in d.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    return d.eval()


@pytest.mark.parametrize(("size", "channels"), [(8, 1), (16, 3), (32, 3), (32, 1)])
def test_shapes(size, channels):
    g, d = tiny_g(size, channels), tiny_d(size, channels)
    z = torch.randn(3, g.latent_dim)
    ws = g.mapping(z)
    assert ws.shape == (3, g.num_ws, 16) and g.num_ws == 2 * size.bit_length() - 4
    x = g.synthesis(ws)
    assert x.shape == (3, channels, size, size) == (3, *g.image_shape)
    assert d(x).shape == (3,)


def test_channel_table_and_sizes():
    # rosinality's table: 512 up to 32 px, then 256·cm at 64, 128·cm at 128, … (config-f is cm = 2)
    for cm in (1, 2):
        theirs = {
            res: 512 if res <= 32 else 16384 * cm // res for res in (4, 8, 16, 32, 64, 128, 256, 512, 1024)
        }
        assert channel_table(1024, channel_multiplier=cm) == theirs
    assert set(channel_table(32, channel_max=8).values()) == {8}
    for bad in (4, 24, 48):
        with pytest.raises(UserError, match="power-of-two"):
            StyleGAN2Generator(bad, **TINY)


@torch.no_grad()
def test_noise_modes():
    g, z = tiny_g(), torch.randn(2, 16)
    const, none = g(z, noise_mode="const"), g(z, noise_mode="none")
    assert torch.equal(const, g(z, noise_mode="const"))
    assert torch.equal(none, g(z, noise_mode="none"))
    assert not torch.allclose(const, none)
    assert not torch.allclose(g(z), g(z))  # fresh noise every call
    with torch.no_grad():
        for m in g.modules():
            if hasattr(m, "noise_strength"):
                m.noise_strength.zero_()
    assert torch.allclose(g(z, noise_mode="random"), none) and torch.allclose(g(z, noise_mode="const"), none)
    with pytest.raises(UserError, match="noise_mode"):
        g(z, noise_mode="fixed")


@torch.no_grad()
def test_truncation():
    g, z = tiny_g(), torch.randn(3, 16)
    ws = g.mapping(z)
    assert torch.equal(g.mapping(z, truncation_psi=1.0), ws)
    assert torch.equal(g(z, truncation_psi=1.0, noise_mode="const"), g.synthesis(ws, noise_mode="const"))
    # ψ = 0: every sample is the image of w_avg
    centre = g.synthesis(g.w_avg.expand(3, -1), noise_mode="const")
    assert torch.allclose(g(z, truncation_psi=0.0, noise_mode="const"), centre, atol=1e-6)
    assert torch.allclose(g.mapping(z, 0.7), g.w_avg + 0.7 * (ws - g.w_avg), atol=1e-6)
    # a cutoff truncates only the first layers
    cut = g.mapping(z, 0.5, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], g.w_avg + 0.5 * (ws[:, :2] - g.w_avg), atol=1e-6)
    assert torch.equal(cut[:, 2:], ws[:, 2:])


def test_w_avg_tracks_the_mapped_mean():
    g, z = tiny_g(), torch.randn(8, 16)
    before = g.w_avg.clone()
    g.eval()
    g.mapping(z)
    assert torch.equal(g.w_avg, before)  # eval mode never moves it
    g.train()
    g.mapping(z, update_w_avg=False)  # the second latent of a mixing pair
    assert torch.equal(g.w_avg, before)
    w = g.mapping(z)[:, 0]
    assert torch.allclose(g.w_avg, before * 0.995 + w.mean(0) * 0.005, atol=1e-6)
    for _ in range(2000):  # the EMA converges to the mean mapped w of a fixed batch
        g.mapping(z)
    assert torch.allclose(g.w_avg, w.mean(0), atol=1e-3)


@torch.no_grad()
def test_mean_latent_is_seeded_and_does_not_move_w_avg():
    g = tiny_g().train()
    before = g.w_avg.clone()
    m = g.mean_latent(256, seed=3)
    assert m.shape == (1, 16) and torch.equal(m, g.mean_latent(256, seed=3))
    assert torch.equal(g.w_avg, before)


@torch.no_grad()
def test_style_mixing():
    g = tiny_g()
    ws1, ws2 = g.mapping(torch.randn(2, 16)), g.mapping(torch.randn(2, 16))
    assert torch.equal(mix_styles(ws1, ws2, 0), ws2)
    assert torch.equal(mix_styles(ws1, ws2, g.num_ws), ws1)
    mixed = mix_styles(ws1, ws2, torch.tensor([1, 3]))  # one crossover per sample
    assert torch.equal(mixed[0, :1], ws1[0, :1]) and torch.equal(mixed[0, 1:], ws2[0, 1:])
    assert torch.equal(mixed[1, :3], ws1[1, :3]) and torch.equal(mixed[1, 3:], ws2[1, 3:])
    images = [g.synthesis(w, noise_mode="const") for w in (ws1, ws2, mix_styles(ws1, ws2, 2))]
    assert not torch.allclose(images[2], images[0]) and not torch.allclose(images[2], images[1])


def test_fir_filters_fixed_tensors():
    x = torch.zeros(1, 1, 6, 6)
    x[0, 0, 2, 3] = 1.0
    # ×2 up-sampling of an impulse is the separable kernel [1, 3, 3, 1]/4 per axis, centred on the 2×2 pixel block
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 4
    expected = torch.zeros(12, 12)
    expected[3:7, 5:9] = taps[:, None] * taps[None, :]
    assert torch.allclose(Upsample2d()(x)[0, 0], expected)
    # a constant stays constant away from the zero-padded border, up and down
    const = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(Upsample2d()(const)[..., 2:-2, 2:-2], torch.tensor(3.0))
    down = upfirdn2d(const, fir_kernel(), down=2, pad=(1, 1))  # (1, 2, 4, 4)
    assert down.shape == (1, 2, 4, 4) and torch.allclose(down[..., 1:-1, 1:-1], torch.tensor(3.0))
    # the blur of a down-sampling 1×1 conv with weight 1: a low-passed, decimated copy
    conv = EqualConv2d(1, 1, 1, down=True, bias=False, activate=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    y = conv(torch.ones(1, 1, 8, 8))
    assert y.shape == (1, 1, 4, 4) and torch.allclose(y[..., 1:-1, 1:-1], torch.tensor(1.0))


def test_minibatch_stddev():
    x = torch.randn(8, 3, 4, 4)
    y = minibatch_stddev(x)  # groups of 4: samples b, b + 2, b + 4, b + 6
    assert y.shape == (8, 4, 4, 4) and torch.equal(y[:, :3], x)
    expected = x[[1, 3, 5, 7]].var(0, unbiased=False).add(1e-8).sqrt().mean()
    assert torch.allclose(y[3, 3], expected.expand(4, 4))
    for b in (1, 3, 6):  # batches that do not divide by 4 shrink the group instead of failing
        assert torch.isfinite(minibatch_stddev(torch.randn(b, 3, 4, 4))).all()


@pytest.mark.parametrize("channels", [3, 1])
@torch.no_grad()
def test_rosinality_round_trip(channels, tmp_path):
    g, d = tiny_g(16, channels), tiny_d(16, channels)
    z, x = torch.randn(4, 16), torch.rand(4, channels, 16, 16) * 2 - 1
    with pytest.warns(UserWarning, match="rosinality's table"):  # tiny widths: only our loader reads them
        path = save_rosinality(tmp_path / "ckpt.pt", g, d)
    g2 = StyleGAN2Generator.from_rosinality(path, channels=channels)
    d2 = StyleGAN2Discriminator.from_rosinality(str(path), channels=channels)
    assert (g2.image_size, g2.channels, g2.latent_dim, g2.n_mlp) == (16, channels, 16, 2)
    assert torch.equal(g2.w_avg, g.w_avg)
    for psi in (1.0, 0.7):
        assert torch.allclose(g2(z, psi, "const"), g(z, psi, "const"), atol=1e-6)
    assert torch.allclose(d2(x), d(x), atol=1e-5)
    if channels == 1:  # rosinality nets are RGB: a grey net exports with the colours tied
        rgb = StyleGAN2Generator.from_rosinality(path)(z, 1.0, "const")
        assert rgb.shape[1] == 3 and torch.allclose(rgb, g(z, 1.0, "const").expand_as(rgb), atol=1e-6)
        d_rgb = StyleGAN2Discriminator.from_rosinality(path)
        assert torch.allclose(d_rgb(x.expand(-1, 3, -1, -1)), d(x), atol=1e-5)


@torch.no_grad()
def test_rosinality_checkpoint_variants(tmp_path):
    g = tiny_g()
    with pytest.warns(UserWarning):
        sd = g.to_rosinality()
    # a bare state dict (train.py's g_ema without latent_avg): w_avg becomes a seeded mean latent
    g2 = StyleGAN2Generator.from_rosinality(sd)
    assert torch.allclose(g2.w_avg, g2.mean_latent(10000, seed=0)[0])
    z = torch.randn(2, 16)
    assert torch.allclose(g2(z, noise_mode="const"), g(z, noise_mode="const"), atol=1e-6)
    with pytest.raises(UserError, match="no discriminator"):
        StyleGAN2Discriminator.from_rosinality({"g_ema": sd})
    with pytest.raises(UserError, match="does not exist"):
        StyleGAN2Generator.from_rosinality(tmp_path / "missing.pt")
    with pytest.raises(UserError, match="layout"):  # e.g. a SWAGAN generator or a truncated file
        StyleGAN2Generator.from_rosinality({k: v for k, v in sd.items() if k != "input.input"})
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        StyleGAN2Generator.from_rosinality(tmp_path / "bad.pt")


def test_backward_reaches_every_parameter():
    g, d = tiny_g().train(), tiny_d().train()
    x = g(torch.randn(4, 16))
    d(x).sum().backward()
    for name, p in [*g.named_parameters(), *d.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@torch.no_grad()
def test_bf16_autocast_forward_is_finite():
    g, d = tiny_g(), tiny_d()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = g(torch.randn(4, 16), truncation_psi=0.7)
        logits = d(x)
    assert torch.isfinite(x.float()).all() and torch.isfinite(logits.float()).all()


def test_path_lengths_closed_form():
    # images linear in ws: x = ws·A summed over the num_ws copies, so J_wᵀ y = A y for every copy
    torch.manual_seed(0)
    b, num_ws, w_dim, c, h = 3, 4, 5, 2, 3
    a = torch.randn(w_dim, c * h * h, requires_grad=True)
    ws = torch.randn(b, num_ws, w_dim, requires_grad=True)
    images = (ws @ a).sum(1).reshape(b, c, h, h)  # (B, C, H, W)
    y = torch.randn(b, c, h, h)
    lengths = path_lengths(images, ws, noise=y)
    expected = (y.reshape(b, -1) @ a.t()).norm(dim=1)  # ‖A y‖ per sample
    assert torch.allclose(lengths, expected, atol=1e-4)
    pen = path_length_penalty(lengths, expected.mean().detach())
    assert torch.allclose(pen, (expected - expected.mean()) ** 2, atol=1e-3)
    # create_graph: the penalty trains the generator; here d/dA Σ(‖Ay‖ − m)² in closed form
    (grad_a,) = torch.autograd.grad(pen.sum(), a)
    e = expected.detach()
    closed = sum(
        2 * (e[i] - e.mean()) / e[i] * torch.outer(a.detach() @ y[i].flatten(), y[i].flatten())
        for i in range(b)
    )
    assert torch.allclose(grad_a, closed, atol=1e-3)
    # default noise is N(0, 1/(H·W)): E‖J_wᵀ y‖² = ‖A‖_F² / (H·W)
    images = (ws @ a).sum(1).reshape(b, c, h, h)
    sq = torch.stack([path_lengths(images, ws).detach() ** 2 for _ in range(400)]).mean()
    assert torch.allclose(sq, a.detach().square().sum() / (h * h), rtol=0.15)


def test_path_lengths_through_the_generator():
    g = tiny_g().train()
    ws = g.mapping(torch.randn(2, 16)).detach().requires_grad_(True)
    lengths = path_lengths(g.synthesis(ws), ws)
    assert lengths.shape == (2,) and torch.isfinite(lengths).all() and (lengths > 0).all()
    path_length_penalty(lengths, 0.0).sum().backward()
    # only the synthesis path moves, and ToRGB biases (constant offsets) never do: the parameters a DDP step
    # must touch with a zero-weighted term
    unused = {name for name, p in g.named_parameters() if p.grad is None}
    assert unused == {n for n, _ in g.named_parameters() if n.startswith("mlp.") or n.endswith("to_rgb.bias")}


def test_r1_of_a_linear_discriminator_is_the_weight_norm():
    w = torch.randn(3 * 8 * 8)

    def linear_d(x):
        return x.flatten(1) @ w

    r1 = r1_penalty(linear_d, torch.randn(4, 3, 8, 8))
    assert torch.allclose(r1, w.square().sum().expand(4))
