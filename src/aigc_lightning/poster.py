"""Animated posters: ``python -m aigc_lightning.poster POSTER.yaml [--model PATH] [--output OUT.mp4]``.

A YAML file describes the poster (configs/poster/digits_sale.yaml; every key in docs/share.md): a background
that a model here makes — a sample by seed (and class for a conditional model), a latent walk, or an image or
video file, optionally stylised by a style network — text layers, and effects on each layer: ``fade_in``,
``fade_out``, ``zoom_in`` / ``zoom_out`` (Ken Burns, with an optional pan), ``slide``. The command writes the MP4
(H.264 yuv420p, streamed frame by frame: memory does not grow with the length) and a still PNG. A background
smaller than the poster is upscaled (bicubic) and the command says by how much: a 32 px digit on a 1920×1080
poster is a blurry, stylised look, not detail the model made.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from PIL import Image, ImageColor, ImageDraw, ImageFont
from torch import Tensor

from aigc_lightning.errors import UserError

EFFECTS = ("fade_in", "fade_out", "zoom_in", "zoom_out", "slide")


@dataclass
class Effect:
    """One effect over ``[start, end]`` seconds (``end`` None: the poster's end). ``amount``: zoom factor (zoom_in
    goes 1 → amount, zoom_out amount → 1); ``pan``: the zoom's drift (x, y) in fractions of the frame;
    ``offset``: a slide's start offset (x, y) in fractions of the frame, ending at the layer's position."""

    type: str
    start: float = 0.0
    end: float | None = None
    amount: float = 1.3
    pan: tuple[float, float] = (0.0, 0.0)
    offset: tuple[float, float] = (0.0, 0.3)


@dataclass
class Background:
    """What fills the frame: ``model`` (pretrained folder, Hub id or CLI checkpoint) sampled at ``seed`` (and
    ``class_label``), or walked through ``walk_keys`` latents when ``walk`` is true; or ``image`` / ``video`` (a
    file). ``stylize``: a style network (folder or checkpoint) applied to it. ``psi``: a GAN's truncation.
    ``fit``: ``cover`` (fill the frame, crop) or ``contain`` (all of it, black bars)."""

    model: str | None = None
    seed: int = 0
    class_label: int | None = None
    psi: float | None = None
    walk: bool = False
    walk_keys: int = 4
    walk_loop: bool = True
    image: str | None = None
    video: str | None = None
    stylize: str | None = None
    color: str = "#000000"
    fit: str = "cover"
    effects: list[Effect] = field(default_factory=list)


@dataclass
class Text:
    """A text layer: ``text`` in ``font`` (a .ttf/.otf file; None: PIL's default font) at ``size`` px, ``color``,
    centred at ``position`` (x, y) in fractions of the frame, with an outline of ``stroke`` px in ``stroke_color``."""

    text: str
    font: str | None = None
    size: int = 64
    color: str = "#ffffff"
    position: tuple[float, float] = (0.5, 0.5)
    stroke: int = 0
    stroke_color: str = "#000000"
    effects: list[Effect] = field(default_factory=list)


@dataclass
class Poster:
    """The poster: ``size`` (width, height; even), ``seconds``, ``fps``, ``output`` MP4, ``still`` PNG (default:
    the MP4's name with .png) taken at ``still_at`` seconds (default: the last frame)."""

    background: Background
    texts: list[Text] = field(default_factory=list)
    size: tuple[int, int] = (1920, 1080)
    seconds: float = 6.0
    fps: int = 24
    output: str = "dynamic_poster.mp4"
    still: str | None = None
    still_at: float | None = None


def _build(cls: type, data: Any, where: str) -> Any:
    """A dataclass from a YAML mapping; an unknown key or a missing one is one line naming it."""
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping of {', '.join(f.name for f in fields(cls))}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(sorted(names))}")
    values = dict(data)
    if "effects" in values:
        values["effects"] = [
            _build(Effect, e, f"{where}.effects[{i}]") for i, e in enumerate(values["effects"] or [])
        ]
        for e in values["effects"]:
            if e.type not in EFFECTS:
                raise UserError(
                    f"{where}: effect type {e.type!r} is unknown; use one of {', '.join(EFFECTS)}"
                )
    try:
        return cls(**values)
    except TypeError as e:
        raise UserError(f"{where}: {e}") from e


def load_poster(path: str | Path) -> Poster:
    """The ``Poster`` a YAML file describes; one ``UserError`` line for a missing file or a bad key."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(
            f"cannot read poster file {path} ({e}); pass a YAML file such as configs/poster/*.yaml"
        ) from e
    if not isinstance(data, dict) or "background" not in data:
        raise UserError(
            f"poster file {path} needs a background: mapping (see configs/poster/digits_sale.yaml)"
        )
    data = dict(data)
    data["background"] = _build(Background, data["background"], "background")
    data["texts"] = [_build(Text, t, f"texts[{i}]") for i, t in enumerate(data.get("texts") or [])]
    poster = _build(Poster, data, "poster")
    w, h = (int(v) for v in poster.size)
    if w % 2 or h % 2 or w < 2 or h < 2:
        raise UserError(f"size {w}x{h}: H.264 yuv420p needs an even width and height; pass e.g. 1920x1080")
    poster.size = (w, h)
    if poster.background.fit not in ("cover", "contain"):
        raise UserError(f"background.fit {poster.background.fit!r}: use cover or contain")
    return poster


def smooth(t: float) -> float:
    """Smoothstep easing of t ∈ [0, 1]."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3 - 2 * t)


def progress(effect: Effect, t: float, total: float) -> float:
    """How far ``effect`` is at time ``t``: 0 before its start, 1 after its end, eased in between."""
    end = total if effect.end is None else effect.end
    return 1.0 if end <= effect.start else smooth((t - effect.start) / (end - effect.start))


def layer_state(effects: list[Effect], t: float, total: float) -> tuple[float, float, float, float, float]:
    """(opacity, zoom, pan x, pan y, slide x, …) at time t: opacity from fades, zoom and pan from zoom effects,
    the slide's remaining offset. Returns (opacity, zoom, pan_x, pan_y, slide_x, slide_y)."""
    opacity, zoom, pan, slide = 1.0, 1.0, [0.0, 0.0], [0.0, 0.0]
    for e in effects:
        p = progress(e, t, total)
        if e.type == "fade_in":
            opacity *= p
        elif e.type == "fade_out":
            opacity *= 1 - p
        elif e.type in ("zoom_in", "zoom_out"):
            q = p if e.type == "zoom_in" else 1 - p
            zoom *= 1 + (e.amount - 1) * q
            pan = [pan[0] + e.pan[0] * p, pan[1] + e.pan[1] * p]
        elif e.type == "slide":
            slide = [slide[0] + e.offset[0] * (1 - p), slide[1] + e.offset[1] * (1 - p)]
    return opacity, zoom, pan[0], pan[1], slide[0], slide[1]


def cover_zoom(image: Tensor, width: int, height: int, zoom: float, pan: tuple[float, float], fit: str = "cover"
               ) -> Tensor:  # fmt: skip
    """``image`` (3, h, w) in [0, 1] fitted to width × height — ``cover``: fills the frame, centre crop;
    ``contain``: whole, black bars — magnified by ``zoom`` around the centre shifted by ``pan`` (fractions of the
    frame), bicubic: (3, height, width)."""
    _, h, w = image.shape
    # the visible window in normalised source coordinates (affine_grid's theta): the fit keeps the aspect, zoom
    # shrinks the window
    pick = min if fit == "cover" else max
    sx = pick(1.0, (h * width) / (w * height)) / zoom
    sy = pick(1.0, (w * height) / (h * width)) / zoom
    cx, cy = 2 * pan[0], 2 * pan[1]
    if fit == "cover":  # keep the window inside the image
        cx, cy = max(-1 + sx, min(1 - sx, cx)), max(-1 + sy, min(1 - sy, cy))
    theta = torch.tensor([[sx, 0.0, cx], [0.0, sy, cy]], dtype=torch.float32)[None]  # (1, 2, 3)
    grid = F.affine_grid(theta, [1, 3, height, width], align_corners=False)
    padding = "border" if fit == "cover" else "zeros"
    out = F.grid_sample(image[None].float(), grid, mode="bicubic", padding_mode=padding, align_corners=False)
    return out[0].clamp(0, 1)


def render_text(text: Text) -> Image.Image:
    """The text layer as a tight RGBA image."""
    try:
        font = (
            ImageFont.truetype(text.font, text.size) if text.font else ImageFont.load_default(size=text.size)
        )
    except OSError as e:
        raise UserError(f"cannot read font {text.font} ({e}); pass a .ttf/.otf file or font: null") from e
    try:
        color, stroke_color = ImageColor.getrgb(text.color), ImageColor.getrgb(text.stroke_color)
    except ValueError as e:
        raise UserError(f"text {text.text!r}: {e}; use a name or #rrggbb") from e
    left, top, right, bottom = font.getbbox(text.text, stroke_width=text.stroke)
    layer = Image.new("RGBA", (max(1, right - left), max(1, bottom - top)), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((-left, -top), text.text, font=font, fill=color, stroke_width=text.stroke,
                               stroke_fill=stroke_color)  # fmt: skip
    return layer


class PosterRenderer:
    """Renders a ``Poster``'s frames; the background comes from ``backgrounds.background_frames``."""

    def __init__(self, poster: Poster, frames: Iterator[Tensor]) -> None:
        self.poster, self.frames = poster, frames
        self.texts = [(t, render_text(t)) for t in poster.texts]
        self.num_frames = max(1, round(poster.seconds * poster.fps))

    def compose(self, background: Tensor, t: float) -> Image.Image:
        """Frame at time ``t`` seconds over a background image (3, h, w) in [0, 1]."""
        poster, (width, height) = self.poster, self.poster.size
        opacity, zoom, px, py, _, _ = layer_state(poster.background.effects, t, poster.seconds)
        x = cover_zoom(background, width, height, zoom, (px, py), poster.background.fit) * opacity
        frame = Image.fromarray((x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()).convert("RGBA")
        for text, layer in self.texts:
            alpha, _, _, _, dx, dy = layer_state(text.effects, t, poster.seconds)
            if alpha <= 0:
                continue
            if alpha < 1:
                layer = layer.copy()
                layer.putalpha(layer.getchannel("A").point(lambda a, s=alpha: round(a * s)))
            cx, cy = (text.position[0] + dx) * width, (text.position[1] + dy) * height
            frame.alpha_composite(layer, (round(cx - layer.width / 2), round(cy - layer.height / 2)))
        return frame.convert("RGB")

    def __iter__(self) -> Iterator[Image.Image]:
        for i, background in zip(range(self.num_frames), self.frames):
            yield self.compose(background, i / self.poster.fps)


def make_poster(poster: Poster, log: Any = print) -> tuple[Path, Path, int]:
    """Write the poster's MP4 and still PNG; returns (mp4, png, frames)."""
    import numpy as np

    from aigc_lightning.callbacks.video import write_frames
    from aigc_lightning.poster_backgrounds import background_frames

    out = Path(poster.output)
    still = Path(poster.still) if poster.still else out.with_suffix(".png")
    num = max(1, round(poster.seconds * poster.fps))
    still_index = (
        num - 1 if poster.still_at is None else min(num - 1, max(0, math.floor(poster.still_at * poster.fps)))
    )
    frames, note, (h, w) = background_frames(poster.background, num, poster.fps)
    pick = max if poster.background.fit == "cover" else min  # cover fills the frame, contain fits inside it
    scale = pick(poster.size[0] / w, poster.size[1] / h)
    resize = f"upscaled {scale:.1f}x (bicubic)" if scale > 1 else f"downscaled {1 / scale:.1f}x"
    log(f"poster {poster.size[0]}x{poster.size[1]}, {num} frames at {poster.fps} fps; background: {note}, "
        f"{w}x{h} px, {resize} ({poster.background.fit})")  # fmt: skip
    renderer = PosterRenderer(poster, frames)
    kept: dict[str, Image.Image] = {}

    def batches() -> Iterator[Tensor]:
        for i, frame in enumerate(renderer):
            if i == still_index:
                kept["still"] = frame
            yield torch.from_numpy(np.array(frame))[None]  # (1, H, W, 3)

    written = write_frames(out, batches(), poster.fps, *poster.size)
    still.parent.mkdir(parents=True, exist_ok=True)
    kept["still"].save(still)
    return out, still, written


def main(argv: list[str] | None = None) -> None:
    """``python -m aigc_lightning.poster POSTER.yaml [--model PATH] [--output OUT.mp4] [--seconds S]``."""
    parser = argparse.ArgumentParser(
        prog="python -m aigc_lightning.poster", description=__doc__.splitlines()[0]
    )
    parser.add_argument("poster", help="the poster's YAML file (configs/poster/*.yaml)")
    parser.add_argument(
        "--model", help="replaces background.model (a pretrained folder, Hub id or checkpoint)"
    )
    parser.add_argument("--output", help="replaces output (the MP4; the still is its .png)")
    parser.add_argument("--seconds", type=float, help="replaces seconds")
    args = parser.parse_args(argv)
    try:
        poster = load_poster(args.poster)
        if args.model:
            poster.background.model = args.model
        if args.output:
            poster.output, poster.still = args.output, None
        if args.seconds:
            poster.seconds = args.seconds
        out, still, count = make_poster(poster, log=lambda line: print(line, file=sys.stderr))
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{out} ({count} frames, {poster.size[0]}x{poster.size[1]}), {still}")


if __name__ == "__main__":
    main()
