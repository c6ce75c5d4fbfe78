"""Content photos and style images for a feed-forward style network (``StyleNetwork``); images, folders and
videos to stylise with it.

RGB in [0, 1], the range of the VGG features the style loss compares (``StyleNetwork`` maps it to its network's
[-1, 1] itself). Batches:
- fit: ``(content (B, 3, S, S), styles [(3, h, w), …], weights (K,))``: random ``image_size`` crops of the
  training photos (flipped at random); the same style images and blend weights in every batch.
- validate: the same, from centre crops of ``val_images`` held-out photos (the module's fixed log images).
- predict: one file per batch: ``{"images": (1, 3, H, W), "names": [name]}`` for an image, ``{"videos":
  [VideoClip], "names": [name]}`` for a video (decoded lazily by whoever iterates it). Under DDP Lightning
  splits the files with an unrepeated distributed sampler, so every file is written once.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from aigc_lightning.datamodules.io import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_EXTENSIONS,
    PredictPlan,
    list_files,
    output_names,
)
from aigc_lightning.datamodules.style import list_images, read_rgb, resize_longer
from aigc_lightning.datamodules.video import VIDEO_EXTENSIONS, VideoClip
from aigc_lightning.errors import UserError


def resize_shorter(x: Tensor, size: int) -> Tensor:
    """Resize (C, H, W) so its shorter side is ``size`` (aspect kept, antialiased)."""
    h, w = x.shape[-2:]
    s = size / min(h, w)
    out_size = (max(size, round(h * s)), max(size, round(w * s)))
    return F.interpolate(x[None], size=out_size, mode="bilinear", antialias=True, align_corners=False)[0]


class PhotoCrops(Dataset):
    """``length`` square crops of side ``size`` from ``files``, in [0, 1]: random with flips, or centred.

    Args:
        files: the photos.
        size: crop side; each photo is first resized so its shorter side is ``size`` (Johnson et al. used 256).
        length: items per epoch (cycles through the photos).
        random_crop: random position and horizontal flip (training) or the centre (validation).
        max_pixels: larger photos are refused (decompression bombs).
        max_scale: random crops only: the shorter side is resized to ``size · s``, ``s`` uniform in
            [1, ``max_scale``], so the network sees the photos' structures at several scales (1: one scale).
        crop: side of the crops, at most ``size``; ``None``: ``size``.
    """

    def __init__(self, files: list[Path], size: int, length: int, random_crop: bool,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, max_scale: float = 1.0,
                 crop: int | None = None) -> None:  # fmt: skip
        self.files, self.size, self.length, self.random_crop = files, size, length, random_crop
        self.max_pixels, self.max_scale, self.crop = max_pixels, max_scale, min(crop or size, size)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        x = read_rgb(self.files[index % len(self.files)], self.max_pixels)
        scale = (
            1 + (self.max_scale - 1) * float(torch.rand(()))
            if self.random_crop and self.max_scale > 1
            else 1.0
        )
        x = resize_shorter(x, round(self.size * scale))  # (3, H', W')
        h, w = x.shape[-2:]
        c = self.crop
        if self.random_crop:  # the torch RNG: seeded per worker by Lightning / seed_everything
            top, left = (int(torch.randint(0, n - c + 1, ())) for n in (h, w))
        else:
            top, left = (h - c) // 2, (w - c) // 2
        x = x[:, top : top + c, left : left + c]  # (3, S, S)
        if self.random_crop and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return x


class StyleBatches:
    """Collate: stacks the crops and attaches the (constant) styles and blend weights; picklable for workers."""

    def __init__(self, styles: list[Tensor], weights: Tensor) -> None:
        self.styles, self.weights = styles, weights

    def __call__(self, crops: list[Tensor]) -> tuple[Tensor, list[Tensor], Tensor]:
        return torch.stack(crops), self.styles, self.weights


class MediaFiles(Dataset):
    """One predict item per image or video file (see the module docstring)."""

    def __init__(self, files: list[Path], names: list[str], image_size: int | None,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:  # fmt: skip
        self.files, self.names, self.image_size, self.max_pixels = files, names, image_size, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        f, name = self.files[index], self.names[index]
        if f.suffix.lower() in VIDEO_EXTENSIONS:
            return {"videos": [VideoClip(str(f))], "names": [name]}
        x = resize_longer(read_rgb(f, self.max_pixels), self.image_size)  # (3, H, W)
        return {"images": x[None], "names": [name]}


def _single(items: list[dict]) -> dict:
    return items[0]  # batch size 1: files differ in size and kind


class ContentDataModule(LightningDataModule):
    """Training photos + style image(s) for ``StyleNetwork``; images, videos or folders of both to stylise.

    Args:
        content: fit: a folder of photos (nested folders too; COCO in real use) or one photo. predict: an image,
            a video (``.mp4``, ``.mov``, ``.avi``, ``.mkv``, ``.webm`` …) or a folder mixing them.
        style: one style image, or a list of them to blend (fit only: the trained network holds the style).
        style_weights: blend weight per style image (normalised to sum to 1); ``None``: equal weights.
        image_size: side of the square training crops (Johnson et al.: 256).
        max_scale: each training photo is resized so its shorter side is ``image_size`` times a random factor in
            [1, ``max_scale``] before cropping (1: always ``image_size``, as Johnson et al.). Several scales keep
            the content at frame sizes other than the crop's.
        style_size: longer side the style images are resized to (aspect kept); ``None`` keeps their size. The
            Gram statistics describe the texture at this scale.
        predict_size: longer side of predicted images; ``None`` keeps each image's size. Videos keep theirs.
        batch_size: training crops per batch (Johnson et al.: 4).
        epoch_size: training crops per epoch; ``None``: one per photo (raise it for a handful of photos).
        val_images: photos held out (a seeded choice) for validation and the logged fixed images; at most
            all but one.
        num_workers: DataLoader workers (JPEG decoding of large photo folders).
        seed: seed of the held-out choice.
        max_image_pixels: image files declaring more pixels (width x height) are refused before decoding
            (decompression bombs; PIL's own limit by default).
    """

    def __init__(
        self,
        content: str = "",
        style: str | list[str] = "",
        style_weights: list[float] | None = None,
        image_size: PositiveInt = 256,
        max_scale: PositiveFloat = 1.0,
        style_size: PositiveInt | None = 256,
        predict_size: PositiveInt | None = None,
        batch_size: PositiveInt = 4,
        epoch_size: PositiveInt | None = None,
        val_images: NonNegativeInt = 4,
        num_workers: NonNegativeInt = 0,
        seed: int = 0,
        max_image_pixels: PositiveInt = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_files: list[Path] = []
        self.val_files: list[Path] = []
        self.collate: StyleBatches | None = None

    def _setup_fit(self) -> None:
        if self.collate is not None:
            return
        hp = self.hparams
        if hp.image_size < 16:
            raise UserError(
                f"--data.image_size {hp.image_size} is too small for VGG features; use 16 or more"
            )
        if hp.max_scale < 1:
            raise UserError(
                f"--data.max_scale {hp.max_scale} is below 1 (crops larger than the photo); use 1 or more"
            )
        styles = [hp.style] if isinstance(hp.style, str) else list(hp.style)
        style_files = [f for s in styles for f in list_images(s, "--data.style")]
        weights = hp.style_weights if hp.style_weights is not None else [1.0] * len(style_files)
        if len(weights) != len(style_files) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise UserError(
                f"--data.style_weights {weights} must be {len(style_files)} non-negative numbers (one per style "
                "image) with a positive sum"
            )
        style_images = [read_rgb(f, hp.max_image_pixels) for f in style_files]
        style_images = [resize_longer(x, hp.style_size) for x in style_images]
        self.collate = StyleBatches(style_images, torch.tensor(weights, dtype=torch.float32) / sum(weights))
        photos = list_images(hp.content, "--data.content")
        held_out = min(hp.val_images, len(photos) - 1)
        order = list(range(len(photos)))
        random.Random(hp.seed).shuffle(order)
        self.val_files = sorted(photos[i] for i in order[:held_out])
        self.train_files = sorted(photos[i] for i in order[held_out:])

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate"):
            self._setup_fit()

    def train_dataloader(self) -> DataLoader:
        self._setup_fit()
        hp = self.hparams
        length = hp.epoch_size or len(self.train_files)
        dataset = PhotoCrops(self.train_files, hp.image_size, length, True, hp.max_image_pixels, hp.max_scale)
        return DataLoader(dataset, batch_size=self.hparams.batch_size, shuffle=True, drop_last=False,
                          collate_fn=self.collate, num_workers=self.hparams.num_workers)  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        self._setup_fit()
        if not self.val_files:
            return []  # nothing held out: the module shows training crops instead
        dataset = PhotoCrops(self.val_files, self.hparams.image_size, len(self.val_files), False,
                             self.hparams.max_image_pixels)  # fmt: skip
        return DataLoader(dataset, batch_size=len(self.val_files), collate_fn=self.collate)

    def _predict_files(self) -> list[Path]:
        return list_files(self.hparams.content, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS, "--data.content",
                          "an image or a video")  # fmt: skip

    def predict_plan(self) -> PredictPlan:
        """``OUT/<name>.png`` per image, ``OUT/<name>.mp4`` per video, from the file list alone (nothing decoded),
        for the writer's checks before any work. The training style images count as inputs too."""
        files, hp = self._predict_files(), self.hparams
        styles = [hp.style] if isinstance(hp.style, str) else list(hp.style)
        names = output_names(files, hp.content)
        return PredictPlan.of_files(files, names, [hp.content, *styles], VIDEO_EXTENSIONS)

    def predict_dataloader(self) -> DataLoader:
        files, hp = self._predict_files(), self.hparams
        dataset = MediaFiles(files, output_names(files, hp.content), hp.predict_size, hp.max_image_pixels)
        return DataLoader(dataset, batch_size=1, collate_fn=_single, num_workers=hp.num_workers)
