"""Video through the style network: streaming decode/encode keeps frame count, size (odd too), frame rate and
audio; CLI predict on an .mp4 and on a folder mixing images and videos; 2-process DDP predict writes each file
once; temporal smoothing lowers flicker. Every video is a few frames the test writes itself with PyAV.
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from aigc_lightning.callbacks.video import write_video
from aigc_lightning.cli import main
from aigc_lightning.datamodules.video import VideoClip
from aigc_lightning.modules import StyleNetwork
from aigc_lightning.nets import TransformNet, VGGFeatures
from conftest import child_env

TESTS = Path(__file__).parent
REPO = TESTS.parent


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread per test


def make_video(path: Path, width: int = 32, height: int = 24, frames: int = 6, fps: int = 12,
               audio: str | None = "aac") -> Path:  # fmt: skip
    """A moving bar over a colour ramp (H.264), with a 440 Hz tone in ``audio``'s codec (or none)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        sound = out.add_stream(audio, rate=8000, layout="mono") if audio else None
        for i in range(frames):
            rgb = np.zeros((height, width, 3), np.uint8)
            rgb[..., 1] = np.linspace(0, 255, width, dtype=np.uint8)
            rgb[:, (3 * i) % width, 0] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000 * frames // fps) / 8000)
            fmt = "fltp" if audio == "aac" else "s16"
            data = (tone.astype(np.float32) if fmt == "fltp" else (tone * 32767).astype(np.int16))[None]
            for start in range(0, data.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, start : start + 1024]), format=fmt,
                                                   layout="mono")  # fmt: skip
                chunk.sample_rate, chunk.pts = 8000, start
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


def streams(path: Path) -> list[str]:
    with av.open(str(path)) as f:
        return [s.type for s in f.streams]


def count_frames(path: Path) -> int:
    return sum(len(b) for b in VideoClip(str(path)).frames(4))


@pytest.mark.parametrize(
    ("name", "size", "audio"),
    [("even.mp4", (32, 24), "aac"), ("odd.mkv", (33, 25), "pcm_s16le"), ("silent.avi", (16, 16), None)],
)
def test_write_video_keeps_frames_size_rate_audio(tmp_path, name, size, audio):
    src = make_video(tmp_path / name, *size, frames=7, fps=10, audio=audio)
    clip = VideoClip(str(src))
    batches = list(clip.frames(3))
    assert [len(b) for b in batches] == [3, 3, 1] and batches[0].dtype == torch.uint8
    out = tmp_path / "out.mp4"
    assert write_video(out, clip, iter(batches)) == 7  # copies (aac) or transcodes (PCM → AAC) the audio
    info = VideoClip(str(out)).info()
    assert (info.width, info.height, info.fps) == (*size, Fraction(10))
    assert count_frames(out) == 7
    assert streams(out) == (["video", "audio"] if audio else ["video"])
    decoded = torch.cat(list(VideoClip(str(out)).frames(8))).float()
    assert (decoded - torch.cat(batches).float()).abs().mean() < 8  # crf 18 of a re-encode: close to the input
    assert not list(tmp_path.glob(".*partial*"))


def test_temporal_smoothing_lowers_flicker():
    torch.manual_seed(0)
    model = StyleNetwork(TransformNet(width=4, num_residual=1), VGGFeatures("none"), content_layers=("conv1_1",),
                         style_layers=("relu1_1",))  # fmt: skip
    noisy = (torch.rand(12, 16, 16, 3) * 255).to(torch.uint8)  # independent frames: maximal flicker

    def flicker(a: float) -> float:
        model.hparams.temporal_smoothing = a
        out = torch.cat(list(model.stylize_frames(noisy.split(5)))).float()  # across batch boundaries too
        assert out.shape == noisy.shape and out.dtype == torch.float32
        return float((out[1:] - out[:-1]).abs().mean())

    assert flicker(0.6) < 0.7 * flicker(0.0)


FIT = ["--model.network.init_args.width", "4", "--model.network.init_args.num_residual", "1",
       "--data.image_size", "16", "--data.style_size", "24", "--data.batch_size", "2", "--data.epoch_size", "2",
       "--data.val_images", "0", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
       "--trainer.enable_model_summary", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny fast_offline.yaml run (its config.yaml and last.ckpt) trained on two generated photos."""
    root = tmp_path_factory.mktemp("video_run")
    (root / "photos").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / "photos" / f"p{i}.png")
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / "style.png")
    main(["fit", "--config", str(REPO / "configs/style/fast_offline.yaml"), "--data.content", str(root / "photos"), "--data.style",
          str(root / "style.png"), "--trainer.default_root_dir", str(root), *FIT])  # fmt: skip
    return root / "lightning_logs" / "version_0"


def test_cli_predict_mp4_and_mixed_folder(run, tmp_path):
    video = make_video(tmp_path / "clip.mp4", 30, 18, frames=9, fps=15)
    out = tmp_path / "out"
    predict = ["predict", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints/last.ckpt"),
               "--output_dir", str(out), "--trainer.enable_progress_bar", "false", "--model.frame_batch_size", "4"]  # fmt: skip
    main([*predict, "--data.content", str(video)])
    info = VideoClip(str(out / "clip.mp4")).info()
    assert (info.width, info.height, info.fps, info.has_audio) == (30, 18, Fraction(15), True)
    assert count_frames(out / "clip.mp4") == 9

    mixed = tmp_path / "mixed"
    (mixed / "sub").mkdir(parents=True)
    make_video(mixed / "sub" / "odd.mov", 17, 11, frames=5, fps=8, audio=None)
    Image.fromarray(np.full((12, 14, 3), 128, np.uint8)).save(mixed / "grey.png")
    main([*predict, "--data.content", str(mixed), "--output_dir", str(tmp_path / "out2")])
    # one output per input and no grid: grid.png is written beside seeded samples only
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["grey.png", "sub_odd.mp4"]
    assert Image.open(tmp_path / "out2" / "grey.png").size == (14, 12)
    info = VideoClip(str(tmp_path / "out2" / "sub_odd.mp4")).info()
    assert (info.width, info.height, info.fps) == (17, 11, Fraction(8)) and count_frames(
        tmp_path / "out2" / "sub_odd.mp4") == 5  # fmt: skip


def test_ddp_predict_writes_each_file_once(run, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i in range(3):
        make_video(mixed / f"v{i}.mp4", 16, 16, frames=3 + i, fps=10, audio=None)
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(mixed / f"i{i}.png")
    out = tmp_path / "out"
    env = child_env()
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [sys.executable, "-m", "aigc_lightning", "predict", "--config", str(run / "config.yaml"), "--ckpt_path",
         str(run / "checkpoints/last.ckpt"), "--data.content", str(mixed), "--output_dir", str(out),
         "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
         "--trainer.enable_progress_bar", "false", "--trainer.callbacks", "reliability_toy.RecordNames",
         "--trainer.callbacks.folder", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    per_rank = [(tmp_path / f"names{r}.txt").read_text().split() for r in (0, 1)]
    assert all(per_rank), "a rank predicted nothing: the files were not split"
    assert sorted(per_rank[0] + per_rank[1]) == ["i0", "i1", "v0", "v1", "v2"]  # each exactly once
    assert sorted(p.name for p in out.glob("v*.mp4")) == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert [count_frames(out / f"v{i}.mp4") for i in range(3)] == [3, 4, 5]


def test_unreadable_video_is_one_error_line(run, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 100)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["predict", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints/last.ckpt"),
              "--data.content", str(bad), "--output_dir", str(out), "--trainer.enable_progress_bar", "false"])  # fmt: skip
    message = str(e.value.code)
    assert message.startswith("error: cannot read video file") and str(bad) in message and "\n" not in message
    assert not list(out.glob("*.mp4")) and not list(out.glob(".*"))  # no partial output left behind


def test_frames_stream_through_decode_stylise_encode(tmp_path):
    """Batch k is decoded only after batch k − 1 was stylised and handed to the encoder: nothing piles up."""
    src = make_video(tmp_path / "long.mp4", 16, 16, frames=12, fps=10, audio=None)
    model = StyleNetwork(TransformNet(width=4, num_residual=1), VGGFeatures("none"), content_layers=("conv1_1",),
                         style_layers=("relu1_1",), frame_batch_size=3)  # fmt: skip
    events: list[str] = []

    def decoded():
        for batch in VideoClip(str(src)).frames(3):
            events.append("decode")
            yield batch

    def encoded(frames):
        for batch in frames:
            events.append("encode")
            yield batch

    assert write_video(tmp_path / "out.mp4", VideoClip(str(src)), encoded(model.stylize_frames(decoded()))) == 12
    assert events == ["decode", "encode"] * 4
