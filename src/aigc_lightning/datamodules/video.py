"""Video files as streams of frame batches (PyAV), for stylising whole films without holding them in memory.

``VideoClip(path)`` is what a predict batch carries for a video: a path that pickles cheaply into DataLoader
workers and other processes. ``clip.frames(n)`` opens the file when iterated and yields uint8 RGB batches
(B, H, W, 3) of at most ``n`` frames, decoding on demand; ``clip.info()`` reads size, frame rate and audio from
the header. Encoding lives in ``callbacks/video.py`` (files are written by callbacks only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from aigc_lightning.errors import UserError

if TYPE_CHECKING:
    import av

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")


@dataclass(frozen=True)
class VideoInfo:
    """What the encoder must reproduce: frame size, frame rate and whether there is audio to carry over."""

    width: int
    height: int
    fps: Fraction
    frames: int  # from the header; 0 when the container does not say
    has_audio: bool


def open_video(path: str) -> av.container.InputContainer:
    """Open ``path`` for reading; a file PyAV cannot read (or one without a video stream) is a ``UserError``."""
    import av  # PyAV: imported where a video is read, not at start-up (~30 ms of every command)

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise UserError(f"cannot read video file {path} ({e}); delete or replace it") from e
    if not container.streams.video:
        container.close()
        raise UserError(f"video file {path} has no video stream; remove it from --data.content")
    return container


class VideoClip:
    """A video file to stylise; decoding happens only while ``frames`` is iterated.

    A plain class, not a dataclass: Lightning's batch transfer rebuilds dataclasses field by field (and refuses
    frozen ones); this one has no tensors to move.

    Args:
        path: the video file.
    """

    def __init__(self, path: str) -> None:
        self.path = str(path)

    def __repr__(self) -> str:
        return f"VideoClip({self.path!r})"

    def info(self) -> VideoInfo:
        with open_video(self.path) as container:
            stream = container.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate or Fraction(25)
            return VideoInfo(stream.codec_context.width, stream.codec_context.height, Fraction(fps),
                             int(stream.frames or 0), bool(container.streams.audio))  # fmt: skip

    def frames(self, batch_size: int) -> Iterator[Tensor]:
        """uint8 RGB frame batches (B, H, W, 3), B ≤ ``batch_size``, in presentation order."""
        import av

        with open_video(self.path) as container:
            stream = container.streams.video[0]
            # Slice threads only: with frame threads ("AUTO") FFmpeg drops the errors of damaged packets, and a
            # truncated file decodes to fewer frames with no error at all.
            stream.thread_type = "SLICE"
            declared, count = int(stream.frames or 0), 0
            batch: list[np.ndarray] = []
            try:
                for frame in container.decode(stream):
                    batch.append(frame.to_ndarray(format="rgb24"))  # (H, W, 3)
                    count += 1
                    if len(batch) == batch_size:
                        yield torch.from_numpy(np.stack(batch))  # (B, H, W, 3)
                        batch = []
            except av.FFmpegError as e:
                raise UserError(
                    f"cannot decode video file {self.path} after {count} frames ({e}); it is damaged or "
                    "truncated: delete or replace it"
                ) from e
            if count < declared:  # a file cut where a packet ends: the demuxer just stops early
                raise UserError(
                    f"video file {self.path} ends after {count} of the {declared} frames its header declares (it "
                    "is truncated); delete or replace it"
                )
            if batch:
                yield torch.from_numpy(np.stack(batch))
