"""Predict never destroys a file: every way it used to lose data, each through the real CLI.

An output folder that is, contains or is inside an input folder; colliding output names; an input called
grid.png; existing outputs; a symlink in the output folder; a truncated video; a decompression-bomb PNG; an
output folder that cannot be created; a file called ``...png``. Each refusal is one ``error:`` line, before any
output is written, and the inputs are byte for byte what they were. Content predict runs the offline
feed-forward style config with an untrained 4-channel network (predict needs no checkpoint); seeded predict
the tiny generator of ``tiny_models.py``.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from aigc_lightning.cli import main
from aigc_lightning.datamodules.video import VideoClip
from aigc_lightning.errors import UserError
from conftest import CONFIGS, child_env

STYLE_NET = ["predict", "--config", str(CONFIGS / "style/fast_offline.yaml"), "--model.network.init_args.width", "4",
             "--model.network.init_args.num_residual", "1", "--trainer.enable_progress_bar", "false"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread per test


def photo(path: Path, seed: int = 0, size: tuple[int, int] = (20, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=Image.registered_extensions()[path.suffix.lower()])
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (symlinks as their target's path), to prove nothing changed."""
    return {
        str(p.relative_to(folder)): (os.readlink(p).encode() if p.is_symlink() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


def refused(args: list[str]) -> str:
    """The one-line message a predict that must fail ends with."""
    with pytest.raises(SystemExit) as e:
        main(args)
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def style_net(content: Path, out: Path, *extra: str) -> list[str]:
    return [*STYLE_NET, "--data.content", str(content), "--output_dir", str(out), *extra]


# ----------------------------------------------------------------------------------------------------------
# the output folder and the inputs


@pytest.mark.parametrize("where", ["same", "inside", "contains", "symlink to it", "relative"])
def test_output_folder_among_the_inputs_is_refused(tmp_path, monkeypatch, where):
    photos = tmp_path / "photos"
    photo(photos / "a.png"), photo(photos / "sub" / "b.png", 1)
    out = {"same": photos, "inside": photos / "out", "contains": tmp_path, "relative": Path("photos/../photos"),
           "symlink to it": tmp_path / "link"}[where]  # fmt: skip
    (tmp_path / "link").symlink_to(photos)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    message = refused(style_net(photos, out))
    assert "--output_dir" in message and f"the input folder {photos}" in message
    assert snapshot(tmp_path) == before  # not one file written, the photos untouched


def test_output_that_is_the_single_input_file_is_refused_even_with_overwrite(tmp_path):
    photos = tmp_path / "photos"
    image = photo(photos / "a.png")
    before = snapshot(photos)
    message = refused(style_net(image, photos, "--overwrite", "true"))
    assert f"{photos / 'a.png'} would replace the input file" in message
    assert snapshot(photos) == before


@pytest.mark.parametrize("first, second", [("x.png", "x.jpg"), ("a/b.png", "a_b.png"), ("v.mov", "v.mp4")])
def test_colliding_output_names_are_refused_naming_both_inputs(tmp_path, first, second):
    photos = tmp_path / "photos"
    for i, name in enumerate((first, second)):
        if name.endswith((".mov", ".mp4")):
            make_video(photos / name, frames=2)
        else:
            photo(photos / name, i)
    out = tmp_path / "out"
    message = refused(style_net(photos, out))
    assert str(photos / first) in message and str(photos / second) in message and "both be written" in message
    assert not out.exists() or not any(out.iterdir())


def test_an_input_called_grid_keeps_its_output_and_content_predict_writes_no_grid(tmp_path):
    photos = tmp_path / "photos"
    photo(photos / "a.png"), photo(photos / "grid.png", 1)  # same size: the old writer made a grid of them
    out = tmp_path / "out"
    main(style_net(photos, out))
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "grid.png"]
    assert Image.open(out / "grid.png").size == (24, 20)  # the stylised grid.png, not a 2-image grid


def test_a_file_called_dots_png_is_an_ordinary_output(tmp_path):
    photos = tmp_path / "photos"
    photo(photos / "...png")  # PIL takes no extension from "...png": the format must be named when saving
    main(style_net(photos, tmp_path / "out"))
    assert Image.open(tmp_path / "out" / "...png").size == (24, 20)


# ----------------------------------------------------------------------------------------------------------
# existing outputs and symlinks


def test_existing_outputs_are_refused_unless_overwrite(tmp_path):
    photos = tmp_path / "photos"
    photo(photos / "a.png"), photo(photos / "b.png", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"earlier work")
    message = refused(style_net(photos, out))
    assert f"{out / 'b.png'} already exists" in message and "--overwrite true" in message
    assert sorted(p.name for p in out.iterdir()) == ["b.png"] and (out / "b.png").read_bytes() == b"earlier work"
    main(style_net(photos, out, "--overwrite", "true"))
    assert Image.open(out / "b.png").size == (24, 20)


def test_seeded_predict_keeps_its_names_and_refuses_to_replace_them(tmp_path):
    base = ["predict", "--model", "tiny_models.TinyGenerator", "--model.net", "tiny_models.TinyNet",
            "--data", "aigc_lightning.datamodules.SeedDataModule", "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--num_samples", "3", "--output_dir", str(tmp_path / "s")]  # fmt: skip
    main(base)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["000000.png", "000001.png", "000002.png",
                                                                  "grid.png"]  # fmt: skip
    before = snapshot(tmp_path / "s")
    assert f"{tmp_path / 's' / '000000.png'} already exists" in refused(base)
    assert snapshot(tmp_path / "s") == before
    main([*base, "--overwrite", "true", "--seed", "5"])
    assert snapshot(tmp_path / "s").keys() == before.keys() and snapshot(tmp_path / "s") != before


def test_a_symlink_in_the_output_folder_is_replaced_never_written_through(tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    photo(photos / "a.png")
    precious = tmp_path / "elsewhere" / "precious.txt"
    precious.parent.mkdir()
    precious.write_bytes(b"the user's thesis")
    out.mkdir()
    (out / "a.png").symlink_to(precious)
    assert "already exists" in refused(style_net(photos, out))  # a link is an existing output too
    main(style_net(photos, out, "--overwrite", "true"))
    assert precious.read_bytes() == b"the user's thesis"
    assert not (out / "a.png").is_symlink() and Image.open(out / "a.png").size == (24, 20)
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # no temporary file left behind


def test_uncreatable_output_folder_is_one_line(tmp_path):
    photos = tmp_path / "photos"
    photo(photos / "a.png")
    (tmp_path / "file.txt").write_text("a file, not a folder")
    message = refused(style_net(photos, tmp_path / "file.txt" / "out"))
    assert message.startswith(f"error: cannot write to --output_dir {tmp_path / 'file.txt' / 'out'}")


# ----------------------------------------------------------------------------------------------------------
# damaged inputs


def make_video(path: Path, frames: int = 24, width: int = 16, height: int = 16, fps: int = 12) -> Path:
    """Noise frames (H.264), the index (moov) at the front: a cut file still opens and declares every frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            rgb = np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return path


def truncated_videos(folder: Path) -> dict[str, Path]:
    """The 24-frame video cut in a packet's middle (a decode error) and right after packet 11 (no error at all:
    the demuxer just stops; only the header's frame count shows it)."""
    full = make_video(folder / "full.mp4")
    data = full.read_bytes()
    with av.open(str(full)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    cuts = {"mid-packet": len(data) // 2, "packet boundary": packets[11][0] + packets[11][1]}
    videos = {}
    for kind, cut in cuts.items():
        videos[kind] = folder / f"{kind.replace(' ', '_')}.mp4"
        videos[kind].write_bytes(data[:cut])
    full.unlink()
    return videos


@pytest.mark.parametrize("kind", ["mid-packet", "packet boundary"])
def test_truncated_video_is_one_line_and_no_output(tmp_path, kind):
    video = truncated_videos(tmp_path / "in")[kind]
    with pytest.raises(UserError, match="truncated"):
        for _ in VideoClip(str(video)).frames(4):
            pass
    out = tmp_path / "out"
    message = refused(style_net(video, out, "--model.frame_batch_size", "4"))
    assert str(video) in message and "truncated" in message
    assert list(out.iterdir()) == []  # neither OUT/<name>.mp4 nor a temporary file


def test_truncated_video_exits_non_zero_as_a_process(tmp_path):
    video = truncated_videos(tmp_path / "in")["packet boundary"]
    env = child_env()
    proc = subprocess.run([sys.executable, "-m", "aigc_lightning", *style_net(video, tmp_path / "out")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: video file {video} ends after 12 of the 24")
    assert "Traceback" not in proc.stderr and not list((tmp_path / "out").iterdir())


def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A 1-pixel PNG whose header (IHDR, CRC fixed) declares ``width`` x ``height``: 70 bytes on disk."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # after the 8-byte signature, IHDR's length and type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # CRC of type + 13 data bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_is_one_line_naming_the_file_and_the_limit(tmp_path):
    photos = tmp_path / "photos"
    photo(photos / "a.png")
    bomb = bomb_png(photos / "bomb.png")
    message = refused(style_net(photos, tmp_path / "out"))
    assert str(bomb) in message and "20000x20000" in message and "--data.max_image_pixels" in message
    # raised above the bomb: the file is read, and its missing pixels are the (one-line) error instead
    message = refused(style_net(photos, tmp_path / "out2", "--data.max_image_pixels", "400000000"))
    assert message.startswith(f"error: cannot read image file {bomb}")


def test_max_image_pixels_reaches_style_transfer_and_its_style_image(tmp_path):
    content = photo(tmp_path / "c.png")
    style = photo(tmp_path / "s.png", 1, size=(30, 40))  # 1200 pixels
    args = ["predict", "--config", str(CONFIGS / "style/gatys_offline.yaml"), "--data.content", str(content),
            "--data.style", str(style), "--output_dir", str(tmp_path / "out"), "--data.max_image_pixels", "1000",
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    message = refused(args)
    assert f"image file {style} declares 40x30" in message and "--data.max_image_pixels to 1200" in message
