"""Latent-walk videos: ``predict --video`` writes seconds × fps H.264 frames that change smoothly and, with
``--video_loop true``, end where they began; VAE (slerp in z) and StyleGAN2 (lerp in w) walks too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.cli import instantiate_module

from aigc_lightning.callbacks.walk import LatentWalk, path_points, walk_positions
from aigc_lightning.cli import main
from aigc_lightning.errors import UserError
from aigc_lightning.gan_latents import StyleLatents
from aigc_lightning.modules import GAN, VAE
from aigc_lightning.nets import StyleGAN2Discriminator, StyleGAN2Generator

pytestmark = pytest.mark.usefixtures("one_thread")



def decode(path: Path) -> tuple[np.ndarray, str, str]:
    """All frames (N, H, W, 3) as floats in [0, 1], the codec and the pixel format."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        return (
            np.stack(frames).astype(np.float64) / 255,
            stream.codec_context.name,
            stream.codec_context.pix_fmt,
        )


def steps(frames: np.ndarray) -> np.ndarray:
    """Mean absolute change from each frame to the next, (N − 1,)."""
    return np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))


@pytest.fixture
def run(tiny_dcgan_checkpoint: Path) -> Path:
    """A tiny DCGAN digits fit's last.ckpt (its config.yaml two folders up)."""
    return tiny_dcgan_checkpoint


def predict_video(ckpt: Path, out: Path, *options: str) -> np.ndarray:
    config = ckpt.parent.parent / "config.yaml"
    main(["predict", "--config", str(config), "--ckpt_path", str(ckpt), "--video", str(out), *options])
    frames, codec, pix_fmt = decode(out)
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    return frames


def test_looping_walk_video_has_seconds_times_fps_smooth_frames_and_ends_where_it_began(
    run: Path, tmp_path
) -> None:
    options = ["--video_seconds", "2", "--video_fps", "12", "--video_loop", "true", "--video_size", "64"]
    frames = predict_video(run, tmp_path / "walk.mp4", *options)
    assert frames.shape == (24, 64, 64, 3)
    step = steps(frames)
    far = np.abs(frames[0] - frames[12]).mean()  # half the loop away: two keys on
    assert far > 0.01, "the walk does not move"
    assert step.max() < 0.5 * far, (step.max(), far)  # each frame is close to the next
    closing = np.abs(frames[-1] - frames[0]).mean()  # the seam: one more step of the same walk
    assert closing < 2 * step.max() + 0.01, (closing, step.max())


def test_walk_without_loop_ends_on_the_last_key_and_refuses_to_overwrite(run: Path, tmp_path) -> None:
    out = tmp_path / "walk.mp4"
    options = [
        "--video_seconds",
        "1",
        "--video_fps",
        "6",
        "--video_keys",
        "2",
        "--video_size",
        "0",
        "--seed",
        "3",
    ]
    frames = predict_video(run, out, *options)
    assert frames.shape == (6, 32, 32, 3)  # the model's own size
    gan = GAN.load_from_checkpoint(run, map_location="cpu")
    expected = gan.sample(2, seed=3)  # keys: seeds 3 and 4
    for frame, key in ((frames[0], expected[0]), (frames[-1], expected[1])):
        assert np.abs(frame[..., 0] - key[0].numpy()).mean() < 0.03  # H.264 (crf 18) of the key's image
    before = out.read_bytes()
    with pytest.raises(SystemExit, match="--video .* exists; pass another path or --overwrite true"):
        main(["predict", "--config", str(run.parent.parent / "config.yaml"), "--ckpt_path", str(run),
              "--video", str(out)])  # fmt: skip
    assert out.read_bytes() == before


def test_path_positions_and_points() -> None:
    loop = walk_positions(8, 4, loop=True)
    assert loop[0] == 0 and loop[-1] == pytest.approx(3.5)  # one step short of key 0 again
    assert walk_positions(5, 3, loop=False).tolist() == [0, 0.5, 1, 1.5, 2]
    keys = torch.randn(3, 6)
    points = path_points(keys, torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64), spherical=True)
    torch.testing.assert_close(points, torch.cat([keys, keys[:1]]), atol=1e-5, rtol=0)  # 3 ≡ key 0: closed
    with pytest.raises(UserError, match="at least 2 key latents"):
        LatentWalk(None, 10, num_keys=1)


def test_vae_walks_in_z_and_stylegan2_in_w() -> None:
    config = {
        "encoder": {
            "class_path": "aigc_lightning.nets.MLPEncoder",
            "init_args": {"hidden_dim": 8, "latent_dim": 3},
        },
        "decoder": {
            "class_path": "aigc_lightning.nets.MLPDecoder",
            "init_args": {"hidden_dim": 8, "latent_dim": 3},
        },
    }
    vae = instantiate_module(VAE, config).eval()
    frames = torch.cat(list(LatentWalk(vae, 10, num_keys=2, seed=5).frames(batch_size=4)))
    assert frames.shape[0] == 10
    torch.testing.assert_close(frames[[0, -1]], vae.sample(2, seed=5))  # from key 0 to key 1 exactly

    g = StyleGAN2Generator(image_size=8, channels=1, latent_dim=8, n_mlp=1, channel_max=8)
    gan = GAN(g, StyleGAN2Discriminator(image_size=8, channels=1, channel_max=8), latents=StyleLatents(),
              mean_latent_samples=8, bn_stat_batches=0).eval()  # fmt: skip
    walk = LatentWalk(gan, 6, num_keys=3, loop=True)
    ws = walk.keys()
    assert ws.shape == (3, g.num_ws, g.w_dim)  # the path's points are ws
    frames = torch.cat(list(walk.frames(batch_size=4)))
    assert frames.shape == (6, 1, 8, 8)
    torch.testing.assert_close(frames[0:1], gan.sample(1, seed=0))  # the first key, as sampled


def test_conditional_stylegan2_walks_in_w_within_the_class() -> None:
    def nets() -> tuple[StyleGAN2Generator, StyleGAN2Discriminator]:
        g = StyleGAN2Generator(image_size=8, channels=1, latent_dim=8, n_mlp=1, channel_max=8, num_classes=3)
        return g, StyleGAN2Discriminator(image_size=8, channels=1, channel_max=8, num_classes=3)

    gan = GAN(*nets(), latents=StyleLatents(), conditional=True, truncation_psi=0.7, mean_latent_samples=9,
              bn_stat_batches=0).eval()  # fmt: skip
    walk = LatentWalk(gan, 5, num_keys=2, seed=3, label=2)
    ws = walk.keys()
    assert ws.shape == (2, gan.generator_ema.num_ws, gan.generator_ema.w_dim)  # a path in w, not z
    frames = torch.cat(list(walk.frames(batch_size=2)))
    # the ends are the class's own samples (truncated towards the class's mean w), the middle a straight line in w
    torch.testing.assert_close(frames[[0, -1]], gan.sample(2, seed=3, labels=2))
    mid = torch.lerp(ws[0:1], ws[1:2], 0.5)
    torch.testing.assert_close(frames[2:3], walk.render(mid))
    other = torch.cat(list(LatentWalk(gan, 5, num_keys=2, seed=3, label=0).frames(batch_size=5)))
    assert (other - frames).abs().mean() > 1e-3  # the class changes every frame


def test_demo_style_mixing_and_sefa_edit_of_a_stylegan2() -> None:
    from aigc_lightning.demo import style_edit

    g = StyleGAN2Generator(image_size=16, channels=1, latent_dim=8, n_mlp=1, channel_max=8)
    gan = GAN(g, StyleGAN2Discriminator(image_size=16, channels=1, channel_max=8), latents=StyleLatents(),
              mean_latent_samples=8, bn_stat_batches=0).eval()  # fmt: skip
    plain = style_edit(gan, 4, 0.7)
    # no mixing and no edit: the sample; mixing with its own seed changes nothing
    torch.testing.assert_close(plain, gan.sample(1, seed=4, truncation_psi=0.7))
    torch.testing.assert_close(style_edit(gan, 4, 0.7, mix_seed=4, mix_layers="fine"), plain)
    mixes = [style_edit(gan, 4, 0.7, mix_seed=9, mix_layers=group) for group in ("coarse", "middle", "fine")]
    assert all((m - plain).abs().mean() > 1e-4 for m in mixes)  # each group changes the image, differently
    assert (mixes[0] - mixes[2]).abs().mean() > 1e-4
    assert (style_edit(gan, 4, 0.7, direction=0, strength=3.0) - plain).abs().mean() > 1e-4
    with pytest.raises(UserError, match="out of range"):
        style_edit(gan, 4, 0.7, direction=99, strength=1.0)
