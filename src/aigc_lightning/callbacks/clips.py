"""Generated clips as files: H.264 MP4 through ``callbacks/video.py``'s streaming encoder, and a grid video.

``ImageWriter`` calls ``write_clip`` for every clip a ``predict_step`` returns under ``"clips"`` (tensors
(C, T, H, W) in [0, 1]) and ``write_clip_grid`` once at the end, which tiles the first clips written (read back
from their files, so DDP ranks need to exchange names only) into ``grid.mp4``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import make_grid

from aigc_lightning.callbacks.video import write_video
from aigc_lightning.datamodules.video import VideoClip, VideoInfo

GRID_CLIPS = 64  # clips tiled into grid.mp4 at most


class _Frames(VideoClip):
    """What ``write_video`` asks of a source, for frames that have no source file: size and rate, no audio."""

    def __init__(self, width: int, height: int, fps: float) -> None:
        super().__init__("")
        self._info = VideoInfo(width, height, Fraction(fps).limit_denominator(1001), 0, False)

    def info(self) -> VideoInfo:
        return self._info


def to_uint8_frames(clip: Tensor) -> Tensor:
    """A clip (C, T, H, W) in [0, 1] as uint8 RGB frames (T, H, W, 3) (grey repeated), rounded."""
    x = clip.detach().float().clamp(0, 1).mul(255).add(0.5).to(torch.uint8).cpu()
    x = x.expand(3, -1, -1, -1) if x.shape[0] == 1 else x[:3]
    return x.permute(1, 2, 3, 0).contiguous()  # (T, H, W, 3)


def write_clip(path: Path, clip: Tensor, fps: float) -> int:
    """Encode ``clip`` (C, T, H, W) in [0, 1] to the MP4 ``path`` at ``fps``; returns the frames written."""
    frames = to_uint8_frames(clip)
    return write_video(path, _Frames(frames.shape[2], frames.shape[1], fps), [frames])


def read_clip(path: Path) -> Tensor:
    """The frames of a video file as uint8 (T, H, W, 3)."""
    batches = list(VideoClip(str(path)).frames(256))
    return torch.cat(batches) if batches else torch.empty(0, 0, 0, 3, dtype=torch.uint8)


def write_clip_grid(paths: list[Path], target: Path, fps: float, nrow: int | None = None) -> None:
    """Tile the clips at ``paths`` (the first ``GRID_CLIPS``, of one size) frame by frame into the MP4
    ``target``; clips shorter than the longest hold their last frame."""
    clips = [read_clip(p) for p in paths[:GRID_CLIPS]]
    if not clips or len({tuple(c.shape[1:]) for c in clips}) > 1:
        return
    length = max(len(c) for c in clips)
    nrow = nrow or max(1, round(len(clips) ** 0.5))
    grid = []
    for t in range(length):
        frame = torch.stack([c[min(t, len(c) - 1)] for c in clips]).permute(0, 3, 1, 2)  # (N, 3, H, W)
        grid.append(make_grid(frame, nrow=nrow, padding=2).permute(1, 2, 0))  # (H', W', 3)
    frames = torch.stack(grid)  # (T, H', W', 3)
    # make_grid pads to even sizes for 2 px padding; yuv420p needs them (odd sizes would fall back to yuv444p)
    write_video(target, _Frames(frames.shape[2], frames.shape[1], fps), [frames])


__all__ = ["read_clip", "to_uint8_frames", "write_clip", "write_clip_grid"]
