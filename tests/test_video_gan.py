"""Video generation (MoCoGAN): networks, the content/motion split, moving digits, training, exact resume, MP4 output
and the clip measures. Tiny networks, 32 px, 4-frame clips."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from aigc_lightning.callbacks.clips import read_clip
from aigc_lightning.callbacks.resume import RNGState
from aigc_lightning.callbacks.video_metrics import clip_statistics, digit_crops, mean_displacement
from aigc_lightning.callbacks.writer import ImageWriter
from aigc_lightning.datamodules import MovingDigitsDataModule, SeedDataModule
from aigc_lightning.datamodules.moving_digits import bounce
from aigc_lightning.errors import UserError
from aigc_lightning.gan_losses import Hinge, WassersteinGP
from aigc_lightning.gan_regularizers import R1
from aigc_lightning.modules import VideoGAN
from aigc_lightning.nets import Generator, MoCoGANDiscriminator, VideoGenerator

pytestmark = pytest.mark.usefixtures("one_thread")
FRAMES = 4


def tiny_nets(frames: int = FRAMES, image_frames: int = 1) -> tuple[VideoGenerator, MoCoGANDiscriminator]:
    g = VideoGenerator(content_dim=6, motion_dim=3, noise_dim=2, frames=frames, image_size=32, width=4)
    d = MoCoGANDiscriminator(image_size=32, width=4, video_width=4, image_frames=image_frames)
    return g, d


def tiny_gan(**kwargs) -> VideoGAN:
    g, d = tiny_nets()
    return VideoGAN(g, d, mean_latent_samples=64, bn_stat_batches=1, **kwargs)


def data(n: int = 16, batch_size: int = 4) -> MovingDigitsDataModule:
    return MovingDigitsDataModule(
        frames=FRAMES, num_clips=n, digit_size=12, batch_size=batch_size, val_fraction=0.25
    )


def trainer(batches: int, **kwargs) -> Trainer:
    defaults = {
        "accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
        "enable_model_summary": False, "max_steps": 2 * batches, "num_sanity_val_steps": 0, "limit_val_batches": 0,
    }  # fmt: skip
    return Trainer(**{**defaults, **kwargs})


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


# ----------------------------------------------------------------------------------------------------------
# Networks and the content/motion split


def test_shapes_and_any_clip_length():
    g, d = tiny_nets(image_frames=3)
    z = torch.randn(5, g.latent_dim)
    assert g.latent_dim == 6 + FRAMES * 2 and isinstance(g.image_generator, Generator)  # DCGAN's, not a copy
    x = g(z)
    assert x.shape == (5, 1, FRAMES, 32, 32) and x.abs().max() <= 1
    assert d(x).shape == (5, 4)  # the video logit and 3 image logits per clip
    longer = g.clip(z[:, :6], torch.randn(5, 9, 2))
    assert longer.shape == (5, 1, 9, 32, 32) and d(longer).shape == (5, 4)


def test_content_code_is_fixed_over_a_clip_and_motion_moves_it():
    g, _ = tiny_nets()
    g.eval()
    seen = []
    g.image_generator.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    content = torch.randn(1, 6).expand(2, -1)
    x = g.clip(content, torch.randn(2, FRAMES, 2))  # same content, two motions
    z = seen[0].view(2, FRAMES, -1)  # the image generator's inputs, clip by clip
    # one content code for every frame
    assert torch.equal(z[:, :, :6], content[:, None].expand(-1, FRAMES, -1))
    assert not torch.allclose(z[0, :, 6:], z[1, :, 6:])  # motion codes differ between the motions
    assert not torch.allclose(z[0, 0, 6:], z[0, 1, 6:])  # and from frame to frame
    assert not torch.allclose(x[0], x[1])


def test_gradients_reach_the_generator_from_both_discriminators():
    g, d = tiny_nets()
    x = g(torch.randn(4, g.latent_dim))
    logits = d(x)
    for column in (0, 1):  # video critic, image critic
        g.zero_grad()
        grads = torch.autograd.grad(
            logits[:, column].sum(), list(g.parameters()), retain_graph=True, allow_unused=True
        )
        assert all(gr is not None for gr in grads)
        assert sum(float(gr.abs().sum()) for gr in grads) > 0


def test_sampling_is_seeded_and_separates_content_from_motion():
    model = tiny_gan()
    trainer(1).fit(model, datamodule=data())
    a = model.sample_video(3, seed=5)
    assert a.shape == (3, 1, FRAMES, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, model.sample_video(3, seed=5)) and torch.equal(a, model.sample(3, seed=5))
    assert torch.equal(model.sample_video(1, seed=6), a[1:2])  # clip i depends on seed S+i alone
    # the training latent of seed 5 laid out as (content, motion): the same clip as through GAN.generate
    from aigc_lightning.seeds import randn_from_seeds

    assert torch.allclose(model.generate(randn_from_seeds(torch.tensor([5]), (model.latent_dim,))), a[:1])
    moved = model.sample_video(3, seed=5, motion_seed=100)  # same content codes, other motions
    assert not torch.allclose(moved, a)
    assert model.sample_video(2, frames=7, seed=0).shape[2] == 7
    strips = model.images_to_log(16)
    assert strips["clips_ema"].shape == (16, 1, 32, 32) and strips["motion_ema"].shape == (16, 1, 32, 32)


def test_bad_options():
    g, d = tiny_nets()
    with pytest.raises(UserError, match="WassersteinGP"):
        VideoGAN(g, d, loss=WassersteinGP())
    with pytest.raises(UserError, match="clip generator"):
        VideoGAN(Generator(width=4), d)
    model = tiny_gan()
    wrong = MovingDigitsDataModule(frames=FRAMES + 1, num_clips=8, digit_size=12, batch_size=4)
    with pytest.raises(UserError, match="frames"):
        trainer(1).fit(model, datamodule=wrong)


# ----------------------------------------------------------------------------------------------------------
# Data


def test_moving_digits_are_seeded_bounded_and_moving():
    dm, again = data(), data()
    dm.setup("fit")
    again.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, FRAMES, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert x.min() >= -1 and x.max() <= 1 and 0 <= y.min() and y.max() <= 9
    assert torch.equal(dm._clips[0], again._clips[0])  # the same clips for the same seed
    other = MovingDigitsDataModule(frames=FRAMES, num_clips=16, digit_size=12, seed=1)
    other.setup("fit")
    assert not torch.equal(other._clips[0], dm._clips[0])
    assert mean_displacement(dm._clips[0].float() / 255) > 0.5
    path = bounce(torch.tensor([[1.0, 9.0]]), torch.tensor([[-2.0, 3.0]]), 6, 10.0)[0]
    assert path[:, 0].tolist() == [1, 1, 3, 5, 7, 9] and path[:, 1].tolist() == [9, 8, 5, 2, 1, 4]
    with pytest.raises(UserError, match="digit_size"):
        MovingDigitsDataModule(digit_size=32, image_size=32)


def test_clip_measures_on_known_motion():
    clips = torch.zeros(2, 1, 5, 32, 32)
    for t in range(5):
        clips[0, :, t, 10:14, 2 + 3 * t : 6 + 3 * t] = 1  # a block moving 3 px right per frame
        clips[1, :, t, 10:14, 10:14] = 1  # a block standing still
    assert mean_displacement(clips[:1]) == pytest.approx(3.0) and mean_displacement(clips[1:]) == 0
    crops = digit_crops(clips, 8)
    assert crops.shape == (2, 5, 1, 8, 8) and torch.equal(crops.sum((2, 3, 4)), torch.full((2, 5), 16.0))
    stats = clip_statistics(clips[1:], crop=16)  # a still clip keeps its label
    assert stats["consistency"] == 1.0 and stats["displacement"] == 0


# ----------------------------------------------------------------------------------------------------------
# Training, resume, predict


def test_fit_changes_both_networks_with_r1_and_hinge():
    model = tiny_gan(r1=R1(gamma=1.0, every=2), loss=Hinge())
    g0, d0 = flat(model.generator), flat(model.discriminator)
    t = trainer(2)
    t.fit(model, datamodule=data())
    assert model.batches == 2 and not torch.equal(flat(model.generator), g0)
    assert not torch.equal(flat(model.discriminator), d0) and "train/r1" in t.callback_metrics


class StopAfterFirstEpoch(Callback):  # an interruption that keeps the run's configured length
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


def test_resume_is_bit_exact(tmp_path):
    def fit(folder, *callbacks, ckpt_path=None):
        torch.manual_seed(0)
        model = tiny_gan(r1=R1(1.0, every=2))
        save = ModelCheckpoint(dirpath=tmp_path / folder, save_last=True)
        t = trainer(
            6, max_steps=-1, max_epochs=2, enable_checkpointing=True, callbacks=[RNGState(), save, *callbacks]
        )
        t.fit(model, datamodule=data(n=12, batch_size=3), ckpt_path=ckpt_path, weights_only=False)
        return model

    whole = fit("whole")
    fit("parts", StopAfterFirstEpoch())
    resumed = fit("resumed", ckpt_path=tmp_path / "parts" / "last.ckpt")
    assert resumed.batches == whole.batches == 6
    for net in ("generator", "discriminator", "generator_ema"):
        assert torch.equal(flat(getattr(resumed, net)), flat(getattr(whole, net))), net


def test_predict_writes_playable_mp4s_with_the_promised_frames(tmp_path):
    model = tiny_gan(sample_frames=6, fps=5, motion_seed=40)
    writer = ImageWriter(str(tmp_path / "out"))
    t = trainer(1, callbacks=[writer])
    t.fit(model, datamodule=data())
    t.predict(model, datamodule=SeedDataModule(3, seed=7, batch_size=2), return_predictions=False)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["000000.mp4", "000001.mp4", "000002.mp4", "grid.mp4"]
    clip = read_clip(tmp_path / "out" / "000001.mp4")
    assert clip.shape == (6, 32, 32, 3)
    # clip 1: the content of seed 8, the motion of seed 41
    expected = model.sample_video(2, seed=7, motion_seed=40)[1]
    error = (clip[..., 0].float() / 255 - expected[0]).abs().mean()
    assert error < 0.05  # H.264 at crf 18 is near-lossless
    assert read_clip(tmp_path / "out" / "grid.mp4").shape[0] == 6


def test_video_folder_serves_windows_of_mp4s_and_frame_folders(tmp_path):
    from PIL import Image

    from aigc_lightning.callbacks.clips import write_clip
    from aigc_lightning.datamodules import VideoFolderDataModule

    for label, name in enumerate(("jump", "walk")):
        (tmp_path / name).mkdir()
        ramp = torch.linspace(0, 1, 12)[None, :, None, None].expand(3, -1, 24, 40)  # brightness = frame / 11
        write_clip(tmp_path / name / "clip.mp4", ramp, 10)
        (tmp_path / name / "frames").mkdir()
        for t in range(12):
            Image.new("RGB", (40, 24), (t * 20, 0, 0)).save(tmp_path / name / "frames" / f"{t:03d}.png")
        write_clip(tmp_path / name / "short.mp4", ramp[:, :3], 10)  # shorter than a window: left out
    dm = VideoFolderDataModule(root=str(tmp_path), frames=4, frame_stride=3, image_size=16, batch_size=4)
    with pytest.warns(UserWarning, match="2 of 6 clips"):
        dm.setup("fit")
    assert dm.class_names == ["jump", "walk"] and len(dm.train_set) + len(dm.val_set or []) == 4
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (len(x), 3, 4, 16, 16) and x.min() >= -1 and x.max() <= 1 and set(y.tolist()) <= {0, 1}
    steps = (x[:, 0, 1:, 8, 8] - x[:, 0, :-1, 8, 8]) / 2  # frame 3 apart: +3/11 (MP4) or +3·20/255 (PNG)
    assert torch.allclose(steps, steps[:, :1].expand(-1, 3), atol=0.03) and (steps > 0.2).all()
    with pytest.raises(UserError, match="no clips found"):
        VideoFolderDataModule(root=str(tmp_path / "walk" / "frames")).setup("fit")  # frames, not clips
    with pytest.raises(UserError, match="has the 34 frames"):
        VideoFolderDataModule(root=str(tmp_path), frames=12, frame_stride=3).setup("fit")


def test_video_metrics_callback_logs_consistency_and_motion():
    from aigc_lightning.callbacks.video_metrics import VideoMetrics

    model = tiny_gan()
    t = trainer(2, callbacks=[VideoMetrics(num_clips=4, crop=12)], limit_val_batches=1, val_check_interval=2)
    t.fit(model, datamodule=data())
    logged = t.callback_metrics
    assert 0 <= float(logged["val/consistency"]) <= 1 and float(logged["val/displacement_ratio"]) >= 0
    assert float(logged["val/frame_fid"]) > 0


@pytest.mark.slow  # two processes starting up: ~2 min of wall time on 2 shared cores
def test_plain_ddp_two_processes_end_bit_identical(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT, child_env

    env = child_env()
    env["OMP_NUM_THREADS"] = "1"
    callback = f'{{"class_path": "test_gan_ddp.SaveRankState", "init_args": {{"out_dir": "{tmp_path}"}}}}'
    r1 = '{"class_path": "aigc_lightning.gan_regularizers.R1", "init_args": {"gamma": 1.0, "every": 2}}'
    cmd = [
        sys.executable, "-m", "aigc_lightning", "fit", "--config", str(ROOT / "configs/video/mocogan_digits.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_steps", "6", "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path / "logs"), f"--trainer.callbacks+={callback}",
        "--model.generator.init_args.width", "4", "--model.discriminator.init_args.width", "4",
        "--model.discriminator.init_args.video_width", "4", "--model.bn_stat_batches", "1",
        "--model.mean_latent_samples", "64", "--model.r1", r1, "--data.num_clips", "64", "--data.batch_size", "8",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["info"]["batches"] == r1["info"]["batches"] == 3 and r0["info"]["world_size"] == 2
    assert r0["info"]["first_batch_sum"] != r1["info"]["first_batch_sum"]  # different shards
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key
