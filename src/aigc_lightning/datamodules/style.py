"""Content and style images for neural style transfer.

Batches (batch size 1: photos differ in size), RGB in [0, 1]: the range of the VGG features and of the optimised
image, so style transfer never converts its data:
- fit: ``(content, styles, weights)`` with content (1, 3, H, W), styles (1, S, 3, H, W) and blend weights
  (1, S) summing to 1. The one content image is served ``steps_per_epoch`` times per epoch.
- predict: ``(content, styles, weights, names)`` once for every image in ``content`` (a file or a folder), each
  with the styles resized to its own size; ``names`` are the content file stems (the writer's file names).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveInt
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from aigc_lightning.datamodules.io import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_EXTENSIONS,
    PredictPlan,
    list_files,
    load_image,
    output_names,
    pil_to_uint8,
)
from aigc_lightning.errors import UserError


def list_images(path: str, option: str) -> list[Path]:
    """``[path]`` for an image file, the sorted image files under a folder; ``UserError`` naming ``option``."""
    return list_files(path, IMAGE_EXTENSIONS, option, "an image file")


def read_rgb(path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Tensor:
    """An image file as float RGB in [0, 1], (3, H, W); more than ``max_pixels`` pixels is a ``UserError`` naming
    ``--data.max_image_pixels``."""
    return pil_to_uint8(load_image(path, 3, max_pixels, "--data.max_image_pixels")).float() / 255


def resize_longer(x: Tensor, size: int | None) -> Tensor:
    """Resize (C, H, W) so its longer side is ``size`` (aspect kept, antialiased); ``None`` keeps it."""
    h, w = x.shape[-2:]
    if size is None or max(h, w) == size:
        return x
    s = size / max(h, w)
    out_size = (max(1, round(h * s)), max(1, round(w * s)))
    return F.interpolate(x[None], size=out_size, mode="bilinear", antialias=True, align_corners=False)[0]


def cover_crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize (C, H, W) to cover ``size`` = (H', W') with its aspect kept, then centre-crop to exactly ``size``."""
    h, w = x.shape[-2:]
    s = max(size[0] / h, size[1] / w)
    out_size = (max(size[0], round(h * s)), max(size[1], round(w * s)))
    x = F.interpolate(x[None], size=out_size, mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (out_size[0] - size[0]) // 2, (out_size[1] - size[1]) // 2
    return x[:, top : top + size[0], left : left + size[1]]


class StyleImages(Dataset):
    """One item per content image: ``(content, styles, weights, name)``, in [0, 1] (see the module docstring).

    Args:
        content_files: the content images.
        style_images: the style images, RGB in [0, 1], each (3, h, w) at its original size.
        weights: blend weight per style image (sums to 1).
        image_size: longer side of the served content, ``None`` for the original size.
        names: one output name per content file.
        repeats: serve the list this many times (fit optimises one image for many steps).
        max_pixels: larger content files are refused (decompression bombs).
    """

    def __init__(
        self,
        content_files: list[Path],
        style_images: list[Tensor],
        weights: Tensor,
        image_size: int | None,
        names: list[str],
        repeats: int = 1,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.files, self.styles, self.weights = content_files, style_images, weights
        self.image_size, self.names, self.repeats, self.max_pixels = image_size, names, repeats, max_pixels
        self._cache: dict[int, tuple[Tensor, Tensor]] = {}

    def __len__(self) -> int:
        return len(self.files) * self.repeats

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, str]:
        i = index % len(self.files)
        if i in self._cache:
            content, styles = self._cache[i]
        else:
            content = resize_longer(read_rgb(self.files[i], self.max_pixels), self.image_size)  # (3, H, W)
            styles = torch.stack(
                [cover_crop(s, tuple(content.shape[-2:])) for s in self.styles]
            )  # (S, 3, H, W)
            # Only fit repeats an item; predict reads each image once, so caching there would only hold memory.
            if self.repeats > 1:
                self._cache[i] = (content, styles)
        return content, styles, self.weights, self.names[i]


class StyleDataModule(LightningDataModule):
    """Content and style images for ``StyleTransfer``: ``fit`` stylises one image, ``predict`` a whole folder.

    Args:
        content: the content image (fit), or an image file or folder (predict: every image, recursively).
        style: one style image, or a list of them to blend.
        style_weights: blend weight per style image (normalised to sum to 1); ``None``: equal weights.
        image_size: longer side of the content image in pixels (aspect kept); ``None`` keeps the file's size.
            Styles are resized to cover the content's size and centre-cropped to it.
        steps_per_epoch: optimisation steps per fit epoch (checkpoints are written at epoch ends).
        num_workers: DataLoader workers for predict (decoding only; the optimisation dominates).
        max_image_pixels: image files declaring more pixels (width x height) are refused before decoding
            (decompression bombs; PIL's own limit by default).
    """

    def __init__(
        self,
        content: str = "",
        style: str | list[str] = "",
        style_weights: list[NonNegativeFloat] | None = None,
        image_size: PositiveInt | None = 256,
        steps_per_epoch: PositiveInt = 10,
        num_workers: NonNegativeInt = 0,
        max_image_pixels: PositiveInt = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        super().__init__()
        self.content, self.style, self.max_image_pixels = content, style, int(max_image_pixels)
        self.style_weights, self.image_size = style_weights, image_size
        self.steps_per_epoch, self.num_workers = steps_per_epoch, num_workers
        self.content_files: list[Path] = []
        self.style_images: list[Tensor] = []
        self.weights: Tensor | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the first content image as served."""
        self.setup()
        h, w = resize_longer(read_rgb(self.content_files[0], self.max_image_pixels), self.image_size).shape[
            -2:
        ]
        return (3, h, w)

    def setup(self, stage: str | None = None) -> None:
        if self.content_files:
            return
        styles = [self.style] if isinstance(self.style, str) else list(self.style)
        if not styles:
            raise UserError("--data.style is empty; pass a style image (or a list of them)")
        style_files = [f for s in styles for f in list_images(s, "--data.style")]
        weights = self.style_weights if self.style_weights is not None else [1.0] * len(style_files)
        if len(weights) != len(style_files) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise UserError(
                f"--data.style_weights {weights} must be {len(style_files)} non-negative numbers (one per style "
                "image) with a positive sum"
            )
        if self.image_size is not None and self.image_size < 16:
            raise UserError(
                f"--data.image_size {self.image_size} is too small for VGG features; use 16 or more"
            )
        self.content_files = list_images(self.content, "--data.content")
        self.style_images = [read_rgb(f, self.max_image_pixels) for f in style_files]
        self.weights = torch.tensor(weights, dtype=torch.float32) / sum(weights)

    def names(self) -> list[str]:
        """Output names: the content file stems; files in sub-folders are prefixed ``sub_dir_stem``."""
        return output_names(self.content_files, self.content)

    def predict_plan(self) -> PredictPlan:
        """``OUT/<name>.png`` per content image, from the file list alone (nothing decoded), for the writer's
        checks before any work; the style images count as inputs too."""
        files = list_images(self.content, "--data.content")
        styles = [self.style] if isinstance(self.style, str) else list(self.style)
        return PredictPlan.of_files(files, output_names(files, self.content), [self.content, *styles])

    def _dataset(self, repeats: int) -> StyleImages:
        self.setup()
        return StyleImages(self.content_files, self.style_images, self.weights, self.image_size, self.names(),
                           repeats, self.max_image_pixels)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        self.setup()
        if len(self.content_files) > 1:
            raise UserError(
                f"fit stylises one image but --data.content {self.content} holds {len(self.content_files)}; "
                "pass one file to fit, or use predict to stylise a whole folder"
            )
        return DataLoader(self._dataset(self.steps_per_epoch), batch_size=1, collate_fn=_drop_name)

    def predict_dataloader(self) -> DataLoader:
        # Batch size 1: photos differ in size. Under DDP Lightning wraps this in an unrepeated distributed
        # sampler, so every image is stylised exactly once across processes.
        return DataLoader(self._dataset(1), batch_size=1, num_workers=self.num_workers)


def _drop_name(items: list) -> tuple[Tensor, Tensor, Tensor]:
    content, styles, weights, _ = torch.utils.data.default_collate(items)
    return content, styles, weights
