"""Temporal consistency: the warps and the temporal loss against closed forms, the flicker metric on clips with
known motion, luminance-only stylisation, and a tiny style network whose pan-clip warping error falls with the
temporal loss on. Tiny networks at 24–32 px keep the file a few seconds."""

from __future__ import annotations

import pytest
import torch

from aigc_lightning.modules import StyleNetwork
from aigc_lightning.motion import (
    affine_grid,
    colour_gap_ratio,
    edge_correlation,
    identity_grid,
    random_motion,
    temporal_loss,
    valid_mask,
    warp,
    warping_error,
)
from aigc_lightning.nets import TransformNet, VGGFeatures
from aigc_lightning.pixels import rgb_to_yiq

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def features() -> VGGFeatures:
    """Random VGG19 up to relu2_1, built once (the full random init costs seconds); frozen, so models share it
    (each model truncates it after its deepest layer: every model here uses relu2_1)."""
    return VGGFeatures("none", pool="avg").truncate(["relu2_1"])


def test_identity_motion_gives_zero_temporal_loss():
    x = torch.rand(2, 3, 17, 23)
    grid = identity_grid(2, 17, 23)
    assert torch.allclose(warp(x, grid), x, atol=1e-5)
    assert valid_mask(grid).min() == 1
    zero_motion = random_motion(x, 0.0, 0.0, 0.0, 0.0)
    assert torch.allclose(zero_motion, grid, atol=1e-6)
    net = TransformNet(width=4, num_residual=1)
    with torch.no_grad():
        y = net(x)
        loss = temporal_loss(warp(y, zero_motion), net(warp(x, zero_motion)), valid_mask(zero_motion))
    assert loss.shape == (2,) and loss.abs().max() < 1e-10


def test_temporal_loss_closed_form_for_a_shift():
    """Shift by d px: a network adding c·column to its input gives out(warp x) − warp(out x) = c·d everywhere
    inside, so the loss is (c d)²; a pointwise network commutes with the shift: 0."""
    x = torch.rand(1, 3, 16, 20)
    d, c = 3, 0.05
    grid = affine_grid(1, 16, 20, shift=(d, 0))
    mask = valid_mask(grid, margin=1e-4)
    assert mask[..., :d].sum() == 0 and mask[..., d:].min() == 1  # the revealed columns are occluded
    ramp = c * torch.arange(20.0).expand(1, 3, 16, 20)
    loss = temporal_loss(warp(x + ramp, grid), warp(x, grid) + ramp, mask)
    assert torch.allclose(loss, torch.tensor([(c * d) ** 2]), rtol=1e-4)
    assert temporal_loss(warp(x.square(), grid), warp(x, grid).square(), mask) < 1e-10


def test_warping_error_and_content_measures():
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(1, 3, 24, 60, generator=g)
    frames = torch.cat(
        [photo[..., 2 * t : 2 * t + 32] for t in range(5)]
    )  # pan: 2 px per frame, (5, 3, 24, 32)
    grids = affine_grid(4, 24, 32, shift=(-2, 0))  # frame t is frame t − 1 moved 2 px left
    assert warping_error(frames, grids).max() < 1e-5
    assert warping_error(frames, identity_grid(4, 24, 32)).min() > 0.1  # the wrong motion
    assert edge_correlation(photo, photo).item() == pytest.approx(1.0, abs=1e-5)
    assert abs(edge_correlation(photo, torch.rand(1, 3, 24, 60, generator=g)).item()) < 0.2
    style = torch.rand(1, 3, 10, 10, generator=g) * 0.2
    assert colour_gap_ratio(style.mean() + 0 * photo, photo, style).item() < 1  # moved toward the style
    assert colour_gap_ratio(photo, photo, style).item() == pytest.approx(1.0)


def test_preserve_color_keeps_the_input_chroma(features):
    model = StyleNetwork(TransformNet(4, 1), features, content_layers=["conv2_1"],
                         style_layers=["relu1_1", "relu2_1"], preserve_color=True)  # fmt: skip
    x = torch.rand(1, 3, 20, 20) * 0.6 + 0.2  # away from 0 and 1, so clamping does not move the chroma
    with torch.no_grad():
        y = model.stylize(x)
    inside = ((y > 0.002) & (y < 0.998)).all(1, keepdim=True)  # pixels the [0, 1] clamp did not touch
    assert inside.float().mean() > 0.5
    assert ((rgb_to_yiq(y)[:, 1:] - rgb_to_yiq(x)[:, 1:]).abs() * inside).max() < 1e-4


def _pan(photo: torch.Tensor, frames: int, step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A sub-pixel pan over ``photo`` (1, 3, H, W) with sensor noise: frames (T, 3, H, W) and their backward grids."""
    h, w = photo.shape[-2:]
    g = torch.Generator().manual_seed(1)
    clip = torch.cat([warp(photo, affine_grid(1, h, w, shift=(-step * t, 0))) for t in range(frames)])
    clip = (clip + 0.02 * torch.randn(clip.shape, generator=g)).clamp(0, 1)
    return clip, affine_grid(frames - 1, h, w, shift=(-step, 0))


def test_temporal_loss_lowers_a_pan_clips_warping_error(features):
    from skimage import data

    photos = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 255
    photos = torch.nn.functional.interpolate(photos, size=(64, 64), antialias=True, mode="bilinear")
    style = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    errors = {}
    for weight in (0.0, 300.0):
        torch.manual_seed(0)
        model = StyleNetwork(TransformNet(4, 1), features, content_layers=["conv2_1"],
                             style_layers=["relu1_1", "relu2_1"], style_weight=5.0, temporal_weight=weight,
                             temporal_motion=0.06, temporal_noise=0.02)  # fmt: skip
        opt = torch.optim.Adam(model.network.parameters(), lr=5e-3)
        model.train()
        for _ in range(12):
            i, j = torch.randint(0, 33, (2,)).tolist()
            crops = photos[..., i : i + 32, j : j + 32].expand(2, -1, -1, -1)
            _, losses = model._step_losses((crops, [style], torch.ones(1)))
            opt.zero_grad()
            losses["loss"].backward()
            opt.step()
        clip, grids = _pan(photos[..., 16:48, :], 6, 1.5)
        model.eval()
        with torch.no_grad():
            errors[weight] = float(warping_error(model.stylize(clip), grids).mean())
    assert errors[300.0] < 0.8 * errors[0.0], errors
