"""Any folder of clips as training data: video files (MP4, …, decoded as a stream with PyAV) or folders of frames.

A **clip** is a video file (``VIDEO_EXTENSIONS``) or a folder whose files are images (its frames, in name order).
``root`` holds clips, or class sub-folders of clips (label = sorted sub-folder index, as ``ImageFolderDataModule``).
Every item is a window of ``frames`` frames, ``frame_stride`` apart, starting at a random frame (torch's generator,
so a seeded run is reproducible), decoded from the start of the file up to the window's end only (never the
whole video), each frame resized on the shorter side and centre-cropped to ``image_size``. Clips shorter than one
window are left out (one warning says how many).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse.typing import PositiveInt
from torch import Tensor
from torch.utils.data import Dataset

from aigc_lightning.datamodules.base import ImageDataModule
from aigc_lightning.datamodules.io import IMAGE_EXTENSIONS, load_image, pil_to_uint8
from aigc_lightning.datamodules.video import VIDEO_EXTENSIONS, VideoClip
from aigc_lightning.errors import UserError
from aigc_lightning.pixels import convert_channels, resize_crop, to_signed


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in path.iterdir())


def _clips_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if (p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS) or _is_frame_folder(p)
    )


def find_clips(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Clips (video files, frame folders) in ``root`` (label 0) or in its class sub-folders (sorted index)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(
            f"video folder {root} does not exist or is not a folder; pass the folder of clips with --data.root"
        )
    clips, labels = _clips_in(root), [0] * len(_clips_in(root))
    classes = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not _is_frame_folder(p) and _clips_in(p)
    )
    for i, name in enumerate(classes):
        found = _clips_in(root / name)
        clips, labels = clips + found, labels + [i] * len(found)
    if not clips:
        raise UserError(
            f"no clips found in {root} (video files {', '.join(VIDEO_EXTENSIONS[:4])}, … or folders of frames, "
            "directly or in class sub-folders); point --data.root at a folder of clips"
        )
    return clips, labels, classes


def frame_count(clip: Path) -> int:
    """Frames of a clip: a frame folder's images, or a video's frames (its header, else counted by decoding)."""
    if clip.is_dir():
        return sum(1 for p in clip.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    video = VideoClip(str(clip))
    return video.info().frames or sum(len(batch) for batch in video.frames(64))


class VideoWindows(Dataset):
    """Random windows of clips: item i is ``(x, label)``, x float32 (C, T, H, W) in [-1, 1].

    Args:
        clips: video files or frame folders.
        labels: one label per clip.
        lengths: frames per clip.
        frames: window length T.
        frame_stride: distance between the window's frames.
        image_size: output height = width.
        channels: 1 or 3.
    """

    def __init__(
        self,
        clips: list[Path],
        labels: list[int],
        lengths: list[int],
        frames: int,
        frame_stride: int,
        image_size: int,
        channels: int,
    ) -> None:
        self.clips, self.labels, self.lengths = clips, labels, lengths
        self.frames, self.frame_stride, self.image_size, self.channels = (
            frames,
            frame_stride,
            image_size,
            channels,
        )

    def __len__(self) -> int:
        return len(self.clips)

    def _read(self, clip: Path, wanted: list[int]) -> Tensor:
        """uint8 frames (T, C, h, w) at the indices ``wanted`` (ascending)."""
        if clip.is_dir():
            files = sorted(p for p in clip.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            return torch.stack([pil_to_uint8(load_image(files[i], self.channels)) for i in wanted])
        keep, index = set(wanted), 0
        out: list[Tensor] = []
        for batch in VideoClip(str(clip)).frames(16):  # (B, H, W, 3) uint8, decoded on demand
            out += [frame.permute(2, 0, 1) for j, frame in enumerate(batch) if index + j in keep]
            index += len(batch)
            if index > wanted[-1]:
                break  # closes the file: nothing after the window is decoded
        if len(out) < len(wanted):
            raise UserError(
                f"video file {clip} ended after {index} frames, before frame {wanted[-1]}; replace it"
            )
        return torch.stack(out)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        span = (self.frames - 1) * self.frame_stride + 1
        start = int(torch.randint(self.lengths[index] - span + 1, ()).item())
        x = self._read(self.clips[index], list(range(start, start + span, self.frame_stride)))  # (T, C, h, w)
        x = resize_crop(convert_channels(x.float(), self.channels), self.image_size)  # (T, C, S, S)
        x = to_signed(x.round().clamp(0, 255) / 255).transpose(0, 1)  # (C, T, S, S)
        return x.contiguous(), torch.tensor(self.labels[index])


class VideoFolderDataModule(ImageDataModule):
    """A folder of clips (video files or frame folders, flat or in class sub-folders); batches ``(x, y)`` with x
    (B, C, T, H, W) in [-1, 1] (a random window of each clip, see the module docstring) and y the class index.

    Args:
        root: the folder.
        frames: frames per window T.
        frame_stride: take every n-th frame (a longer window at the same cost: 2 halves 30 fps to 15).
        image_size: output height = width.
        channels: 1 or 3.
        **kwargs: ``ImageDataModule``'s other arguments (batch size, workers, split, seed).
    """

    def __init__(
        self,
        root: str = "data/videos",
        frames: PositiveInt = 16,
        frame_stride: PositiveInt = 1,
        image_size: PositiveInt = 64,
        channels: Literal[1, 3] = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, image_size=image_size, channels=channels, **kwargs)
        if self.binarize:
            raise UserError("VideoFolderDataModule serves grey levels only; drop --data.binarize")
        self.frames, self.frame_stride = frames, frame_stride

    @property
    def class_names(self) -> list[str] | None:
        """The class sub-folders' names, sorted (label i = the i-th); ``None`` for a flat folder."""
        return find_clips(self.root)[2] or None

    def load(self, train: bool, binarize: bool, seed: int | None) -> Dataset | None:
        if not train:
            return None
        clips, labels, _ = find_clips(self.root)
        lengths = [frame_count(c) for c in clips]
        span = (self.frames - 1) * self.frame_stride + 1
        keep = [i for i, n in enumerate(lengths) if n >= span]
        if not keep:
            raise UserError(
                f"no clip in {self.root} has the {span} frames a window needs (--data.frames {self.frames}, "
                f"--data.frame_stride {self.frame_stride}); lower them or add longer clips"
            )
        if len(keep) < len(clips):
            warnings.warn(f"{len(clips) - len(keep)} of {len(clips)} clips in {self.root} are shorter than {span} "
                          "frames and are left out", stacklevel=2)  # fmt: skip
        clips, labels, lengths = ([items[i] for i in keep] for items in (clips, labels, lengths))
        return VideoWindows(
            clips, labels, lengths, self.frames, self.frame_stride, self.image_size, self.channels
        )


__all__ = ["VideoFolderDataModule", "VideoWindows", "find_clips", "frame_count"]
