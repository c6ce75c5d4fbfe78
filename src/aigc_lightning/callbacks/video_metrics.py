"""Measures of generated clips: frame-level FID/KID, content consistency and motion statistics.

- **Frame FID/KID**: every frame of every clip as an image, through ``evaluate_images`` (the same extractor and
  quantisation as ``GenerativeMetrics``; the packaged digits classifier's features by default). It judges the
  frames, not the motion.
- **Content consistency** (moving digits): the digits classifier labels a crop around the digit in every frame; a
  clip is consistent when all its frames get one label. MoCoGAN's content code is meant to fix the identity over
  a clip, so a generator that lets motion change the digit scores low.
- **Motion**: the intensity centre of mass of each frame, and the mean distance it moves from frame to frame in
  pixels; generated clips should move about as much as the data (a frozen clip scores 0).

``clip_statistics(clips)`` returns all but FID for a set of clips; ``VideoMetrics`` logs them (and the frame FID)
at validation for any module with ``sample_video``. ``python -m bench video_digits`` compares a checkpoint's clips
with the data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jsonargparse.typing import PositiveInt
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn

from aigc_lightning.callbacks.metrics import evaluate_images
from aigc_lightning.nets.features import load_classifier
from aigc_lightning.pixels import convert_channels, to_signed, to_unit


def centre_of_mass(clips: Tensor) -> Tensor:
    """Intensity centre of mass (y, x) in pixels of every frame of clips (B, C, T, H, W) in [0, 1]: (B, T, 2)."""
    w = clips.float().mean(1)  # (B, T, H, W): grey intensity
    h, wd = w.shape[-2:]
    total = w.sum((-2, -1)).clamp_min(1e-6)  # (B, T)
    y = (w.sum(-1) * torch.arange(h, dtype=w.dtype, device=w.device)).sum(-1) / total
    x = (w.sum(-2) * torch.arange(wd, dtype=w.dtype, device=w.device)).sum(-1) / total
    return torch.stack([y, x], -1)


def mean_displacement(clips: Tensor) -> float:
    """Mean frame-to-frame distance (pixels) the centre of mass moves, over all clips (B, C, T, H, W) in [0, 1]."""
    com = centre_of_mass(clips)  # (B, T, 2)
    return float((com[:, 1:] - com[:, :-1]).norm(dim=-1).mean()) if clips.shape[2] > 1 else 0.0


def digit_crops(clips: Tensor, size: int) -> Tensor:
    """A ``size`` px square around each frame's centre of mass (kept inside the frame): (B, T, C, size, size)."""
    b, c, t, h, w = clips.shape
    com = centre_of_mass(clips).round().long()  # (B, T, 2)
    top = (com[..., 0] - size // 2).clamp(0, h - size)
    left = (com[..., 1] - size // 2).clamp(0, w - size)
    frames = clips.transpose(1, 2)  # (B, T, C, H, W)
    out = torch.empty(b, t, c, size, size, dtype=clips.dtype, device=clips.device)
    for i in range(b):
        for j in range(t):
            y, x = int(top[i, j]), int(left[i, j])
            out[i, j] = frames[i, j, :, y : y + size, x : x + size]
    return out


@torch.no_grad()
def frame_labels(clips: Tensor, classifier: nn.Module, crop: int | None = None) -> Tensor:
    """The classifier's label of every frame (B, T) of clips (B, C, T, H, W) in [0, 1]; ``crop``: classify a square
    of that size around the digit (moving digits are smaller than the frame the classifier was trained on)."""
    b, _, t = clips.shape[:3]
    frames = digit_crops(clips, crop) if crop else clips.transpose(1, 2)
    x = frames.flatten(0, 1).float()  # (B·T, C, h, w)
    x = convert_channels(x, classifier.channels)
    x = F.interpolate(x, size=classifier.image_size, mode="bilinear", antialias=True, align_corners=False)
    logits = classifier(to_signed(x.clamp(0, 1)))
    return logits.argmax(1).view(b, t)


def clip_statistics(
    clips: Tensor, classifier: nn.Module | None = None, crop: int | None = None
) -> dict[str, float]:
    """``consistency`` (share of clips whose frames all get one label), ``displacement`` (mean px per frame) and
    ``frame_accuracy_of_first`` (share of frames labelled like their clip's first frame) of clips in [0, 1]."""
    classifier = classifier if classifier is not None else load_classifier()
    labels = frame_labels(clips, classifier.to(clips.device), crop)  # (B, T)
    same = labels == labels[:, :1]
    return {
        "consistency": float(same.all(1).float().mean()),
        "frame_agreement": float(same.float().mean()),
        "displacement": mean_displacement(clips),
    }


def frame_fid(real: Tensor, fake: Tensor, **kwargs) -> dict[str, float]:
    """FID, KID and IS of the frames of clips (B, C, T, H, W) in [0, 1] (``evaluate_images`` on every frame)."""
    return evaluate_images(real.transpose(1, 2).flatten(0, 1), fake.transpose(1, 2).flatten(0, 1), **kwargs)


class VideoMetrics(Callback):
    """At every ``every_n_epochs``-th validation, ``num_clips`` clips of ``pl_module.sample_video`` (seeds 0 …)
    against the first ``num_clips`` validation clips: logs ``val/frame_fid``, ``val/consistency`` and
    ``val/displacement_ratio`` (generated over real mean displacement). Rank 0 computes; other ranks log the
    same values (broadcast) so every rank logs alike.

    Args:
        num_clips: clips generated (and real clips kept) per evaluation.
        crop: side of the square around the digit the classifier labels (moving digits: the digit size);
            ``None`` labels whole frames.
        every_n_epochs: evaluate at every n-th validation epoch.
    """

    def __init__(
        self, num_clips: PositiveInt = 64, crop: PositiveInt | None = 16, every_n_epochs: PositiveInt = 1
    ):
        self.num_clips, self.crop, self.every_n_epochs = num_clips, crop, every_n_epochs
        self.real: list[Tensor] = []
        self.evaluations = 0

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.real = []

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        kept = sum(len(r) for r in self.real)
        if kept < self.num_clips:
            self.real.append(to_unit(batch[0][: self.num_clips - kept]).detach().float().cpu())

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not self.real:
            return
        self.evaluations += 1
        if (self.evaluations - 1) % self.every_n_epochs:
            return
        values = torch.zeros(3)
        if trainer.global_rank == 0:
            real = torch.cat(self.real)
            fake = pl_module.sample_video(len(real), seed=0).float().cpu()
            stats = clip_statistics(fake, crop=self.crop)
            ratio = stats["displacement"] / max(mean_displacement(real), 1e-6)
            values = torch.tensor([frame_fid(real, fake)["fid"], stats["consistency"], ratio])
        values = trainer.strategy.broadcast(values, 0)
        for key, value in zip(("frame_fid", "consistency", "displacement_ratio"), values.tolist()):
            pl_module.log(f"val/{key}", value)


__all__ = [
    "VideoMetrics",
    "centre_of_mass",
    "clip_statistics",
    "digit_crops",
    "frame_fid",
    "frame_labels",
    "mean_displacement",
]
