"""A poster's background as a stream of frames (3, h, w) in [0, 1], one per poster frame, made lazily: a model's
sample (still), a latent walk, an image, a video (resampled to the poster's frame rate, its last frame held), each
optionally stylised by a style network; or a plain colour."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import ImageColor
from torch import Tensor

from aigc_lightning.errors import UserError


def _sample(model: Any, bg: Any) -> Tensor:
    """One image (3 or 1, h, w) in [0, 1] from seed ``bg.seed`` (class ``bg.class_label``, truncation ``bg.psi``)."""
    kwargs: dict[str, Any] = {}
    if bg.class_label is not None:
        if not getattr(model, "num_classes", 0):
            raise UserError("background.class_label needs a class-conditional model; drop it for this model")
        kwargs["labels"] = int(bg.class_label)
    if bg.psi is not None and hasattr(model, "generate"):
        kwargs["truncation_psi"] = float(bg.psi)
    with torch.no_grad():
        return model.sample(1, seed=bg.seed, **kwargs)[0]


def _rgb(x: Tensor) -> Tensor:
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]


def _stylized(image: Tensor, stylizer: Any) -> Tensor:
    """``image`` (3, h, w) through the style network (None: as it is)."""
    if stylizer is None:
        return image
    with torch.no_grad():
        return stylizer.stylize(_rgb(image)[None].to(stylizer.device))[0].cpu()


def _held(frames: Iterator[Tensor], count: int) -> Iterator[Tensor]:
    """``count`` frames of ``frames``, the last one repeated when it runs out."""
    last = None
    for _ in range(count):
        last = next(frames, last)
        if last is None:
            raise UserError("the background video has no frames; pass another file")
        yield last


def _video_frames(path: str, fps: int) -> Iterator[Tensor]:
    """The video's frames at ``fps`` (each poster frame takes the source frame shown at its time)."""
    from aigc_lightning.datamodules.video import VideoClip

    clip = VideoClip(path)
    source_fps = float(clip.info().fps)
    shown, index = None, -1
    out_time = 0.0
    for batch in clip.frames(8):
        for frame in batch:  # (H, W, 3) uint8
            index += 1
            shown = frame.permute(2, 0, 1).float() / 255
            while out_time < (index + 1) / source_fps:  # poster frames shown during this source frame
                yield shown
                out_time += 1 / fps


def background_frames(bg: Any, num_frames: int, fps: int) -> tuple[Iterator[Tensor], str, tuple[int, int]]:
    """``num_frames`` background frames (3, h, w) in [0, 1] for a ``poster.Background``, a line saying what they
    are, and their size (h, w), so the poster can say how far it upscales."""
    from aigc_lightning.modules.pretrained import load_model

    if sum(x is not None and x is not False for x in (bg.model, bg.image, bg.video)) > 1:
        raise UserError("background takes one of model, image, video; remove the others")
    stylizer = None
    if bg.stylize:
        stylizer = load_model(bg.stylize)
        if not hasattr(stylizer, "stylize"):
            raise UserError(
                f"background.stylize {bg.stylize} is a {type(stylizer).__name__}, not a style network"
            )
    if bg.model:
        model = load_model(bg.model)
        if not hasattr(model, "sample"):
            raise UserError(
                f"background.model {bg.model} is a {type(model).__name__}; it makes no images alone"
            )
        if bg.walk:
            from aigc_lightning.callbacks.walk import LatentWalk

            label = None if bg.class_label is None else int(bg.class_label)
            walk = LatentWalk(model, num_frames, bg.walk_keys, bg.walk_loop, bg.seed, label)
            frames = (image for images in walk.frames(8) for image in images)
            what = f"latent walk through {bg.walk_keys} keys from seed {bg.seed}"
        else:
            image = _stylized(_rgb(_sample(model, bg)), stylizer)
            frames = iter([image] * num_frames)
            what = f"{type(model).__name__} sample, seed {bg.seed}"
    elif bg.image:
        from aigc_lightning.datamodules.io import load_image, pil_to_uint8

        path = Path(bg.image)
        if not path.is_file():
            raise UserError(f"background.image {path} does not exist; pass an image file")
        image = _stylized(pil_to_uint8(load_image(path, 3)).float() / 255, stylizer)
        frames, what = iter([image] * num_frames), f"image {path}"
    elif bg.video:
        if not Path(bg.video).is_file():
            raise UserError(f"background.video {bg.video} does not exist; pass a video file")
        frames, what = _video_frames(bg.video, fps), f"video {bg.video}"
    else:
        try:
            colour = torch.tensor(ImageColor.getrgb(bg.color)[:3], dtype=torch.float32) / 255
        except ValueError as e:
            raise UserError(f"background.color {bg.color!r}: {e}; use a name or #rrggbb") from e
        frames, what = iter([colour.view(3, 1, 1).expand(3, 2, 2)] * num_frames), f"colour {bg.color}"
    frames = _held((_rgb(f.cpu().float()) for f in frames), num_frames)
    if stylizer is not None:
        if bg.walk or bg.video:  # moving: every frame; still images were stylised once above
            frames = (_stylized(f, stylizer) for f in frames)
        what += f", stylised by {bg.stylize}"
    first = next(frames)

    def chained() -> Iterator[Tensor]:
        yield first
        yield from frames

    return chained(), what, (first.shape[1], first.shape[2])


__all__ = ["background_frames"]
