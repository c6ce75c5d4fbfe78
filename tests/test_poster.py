"""Animated posters: a YAML renders a 1920×1080 MP4 (seconds × fps frames) and a still PNG with fade-in, zoom-out and
text over a generated background; effects' timing; image and video backgrounds; one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.cli import instantiate_module
from PIL import Image

from aigc_lightning.callbacks.video import write_frames
from aigc_lightning.errors import UserError
from aigc_lightning.modules import VAE
from aigc_lightning.poster import Effect, layer_state, load_poster, main, make_poster

pytest.importorskip("safetensors", reason="the background model is a pretrained folder (safetensors)")
pytestmark = pytest.mark.usefixtures("one_thread")


def decode(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.float64) / 255


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny VAE's pretrained folder: a model here that draws 8×8 digits-sized backgrounds."""
    config = {
        "encoder": {"class_path": "aigc_lightning.nets.MLPEncoder", "init_args": {"hidden_dim": 8, "latent_dim": 3,
                                                                                  "image_size": 8}},
        "decoder": {"class_path": "aigc_lightning.nets.MLPDecoder", "init_args": {"hidden_dim": 8, "latent_dim": 3,
                                                                                  "image_size": 8}},
    }  # fmt: skip
    vae = instantiate_module(VAE, config)
    vae.hparams.update(config)
    return vae.save_pretrained(tmp_path_factory.mktemp("vae") / "model")


def write_yaml(path: Path, **poster) -> Path:
    path.write_text(yaml.safe_dump(poster))
    return path


def test_full_hd_poster_with_fade_in_zoom_out_and_text(model_dir: Path, tmp_path: Path, capsys) -> None:
    spec = write_yaml(
        tmp_path / "poster.yaml",
        size=[1920, 1080], seconds=0.5, fps=8, output=str(tmp_path / "out" / "dynamic_poster.mp4"),
        background={"model": str(model_dir), "seed": 3, "effects": [
            {"type": "fade_in", "start": 0, "end": 0.5}, {"type": "zoom_out", "start": 0, "amount": 1.5}]},
        texts=[{"text": "SALE", "size": 200, "color": "#ff0000", "position": [0.5, 0.5]}],
    )  # fmt: skip
    main([str(spec)])
    out = capsys.readouterr()
    assert "upscaled 240.0x (bicubic)" in out.err  # 8 px → 1920 columns to cover the frame, said plainly
    frames = decode(tmp_path / "out" / "dynamic_poster.mp4")
    assert frames.shape == (4, 1080, 1920, 3)  # seconds × fps
    means = frames.mean(axis=(1, 2, 3))
    assert means[0] < 0.02 and np.all(np.diff(means) > 0)  # fades in from black
    still = np.asarray(Image.open(tmp_path / "out" / "dynamic_poster.png")).astype(np.float64) / 255
    assert still.shape == (1080, 1920, 3)
    assert np.abs(still - frames[-1]).mean() < 0.02  # the still is the last frame (H.264 aside)
    centre = still[500:580, 900:1020]  # inside the red text
    assert (centre[..., 0] - centre[..., 1]).max() > 0.5


def test_effects_timing() -> None:
    fade = [Effect("fade_in", 1, 2)]
    assert [layer_state(fade, t, 4)[0] for t in (0, 1.5, 3)] == [0.0, 0.5, 1.0]
    zoom = [Effect("zoom_out", 0, None, amount=2.0)]
    assert layer_state(zoom, 0, 4)[1] == 2.0 and layer_state(zoom, 4, 4)[1] == 1.0
    slide = [Effect("slide", 0, 1, offset=(0.2, 0.0))]
    assert layer_state(slide, 0, 4)[4] == pytest.approx(0.2) and layer_state(slide, 1, 4)[4] == 0.0


def test_image_and_video_backgrounds(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    Image.fromarray(np.full((30, 20, 3), (0, 200, 0), np.uint8)).save(image)
    spec = write_yaml(tmp_path / "a.yaml", size=[40, 20], seconds=0.25, fps=8, output=str(tmp_path / "a.mp4"),
                      background={"image": str(image), "fit": "contain"})  # fmt: skip
    make_poster(load_poster(spec), log=lambda line: None)
    frame = decode(tmp_path / "a.mp4")[0]
    assert (
        frame[10, 20, 1] > 0.7 and frame[10, 2].max() < 0.1
    )  # green image in the middle, black bars beside it

    clip = tmp_path / "clip.mp4"  # 4 frames at 4 fps: grey levels 0, 80, 160, 240
    levels = [torch.full((1, 16, 16, 3), 80 * i, dtype=torch.uint8) for i in range(4)]
    write_frames(clip, levels, 4, 16, 16)
    spec = write_yaml(tmp_path / "v.yaml", size=[16, 16], seconds=2, fps=8, output=str(tmp_path / "v.mp4"),
                      background={"video": str(clip)})  # fmt: skip
    _, _, count = make_poster(load_poster(spec), log=lambda line: None)
    grey = decode(tmp_path / "v.mp4").mean(axis=(1, 2, 3)) * 255
    assert count == 16
    np.testing.assert_allclose(grey[:8], np.repeat([0, 80, 160, 240], 2), atol=4)  # each source frame twice
    np.testing.assert_allclose(grey[8:], 240, atol=4)  # then its last frame held


def test_bad_posters_are_one_line_errors(tmp_path: Path) -> None:
    spec = write_yaml(tmp_path / "p.yaml", background={"colour": "red"})
    with pytest.raises(UserError, match="background: unknown key 'colour'; the keys are"):
        load_poster(spec)
    spec = write_yaml(tmp_path / "p.yaml", size=[101, 50], background={})
    with pytest.raises(UserError, match="even width and height"):
        load_poster(spec)
    spec = write_yaml(tmp_path / "p.yaml", background={"effects": [{"type": "spin"}]})
    with pytest.raises(UserError, match="effect type 'spin' is unknown"):
        load_poster(spec)
    with pytest.raises(SystemExit, match="error: cannot read poster file"):
        main([str(tmp_path / "missing.yaml")])


@pytest.mark.parametrize("spec", sorted((Path(__file__).parent.parent / "configs" / "poster").glob("*.yaml")),
                         ids=lambda p: p.name)  # fmt: skip
def test_example_posters_load(spec: Path) -> None:
    poster = load_poster(spec)
    assert poster.size == (1920, 1080) and poster.background.model and poster.texts
