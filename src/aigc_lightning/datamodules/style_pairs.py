"""Content photos paired with style images, for a network that takes any style (``modules.adain.AdaIN``).

RGB in [0, 1]. Batches:
- fit: ``(pairs,)`` with pairs (B, 6, S, S), a photo's RGB then a style's (one tensor of 6 channels, so the
  ``ImageLogger`` keeps pairs as its fixed images): random ``image_size`` crops of a training photo and of a style
  image (each resized first: photos' shorter side to ``image_size`` times up to ``max_scale``, styles' shorter side
  to ``style_size``), both flipped at random; photo and style drawn independently.
- validate: centre crops of the ``val_images`` held-out photos, each with a centre crop of a style (cycling).
- predict: ``ContentDataModule``'s items (one image or video per batch) plus ``"style"``: the one style image
  (1, 3, h, w), its longer side ``style_size``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from aigc_lightning.datamodules.content import ContentDataModule, MediaFiles, PhotoCrops
from aigc_lightning.datamodules.io import DEFAULT_MAX_IMAGE_PIXELS, output_names
from aigc_lightning.datamodules.style import list_images, read_rgb, resize_longer
from aigc_lightning.errors import UserError


class CropPairs(Dataset):
    """Item i: a crop of a photo and a crop of a style image, concatenated (6, S, S); with ``permute_colors`` the
    style's RGB channels in a random order (six palettes from each style image)."""

    def __init__(
        self, photos: PhotoCrops, styles: PhotoCrops, random_pairs: bool, permute_colors: bool = False
    ) -> None:
        self.photos, self.styles, self.random_pairs, self.permute_colors = (
            photos,
            styles,
            random_pairs,
            permute_colors,
        )

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> Tensor:
        j = int(torch.randint(len(self.styles.files), ())) if self.random_pairs else index
        style = self.styles[j]
        if self.permute_colors:
            style = style[torch.randperm(3)]
        return torch.cat([self.photos[index], style])  # (6, S, S)


def _pairs(items: list[Tensor]) -> tuple[Tensor]:
    return (torch.stack(items),)  # (B, 6, S, S)


class WithStyle(Dataset):
    """``MediaFiles`` items with the one style image added under ``"style"``."""

    def __init__(self, media: MediaFiles, style: Tensor) -> None:
        self.media, self.style = media, style

    def __len__(self) -> int:
        return len(self.media)

    def __getitem__(self, index: int) -> dict:
        return {**self.media[index], "style": self.style[None]}


def _single(items: list[dict]) -> dict:
    return items[0]


class StylePairsDataModule(ContentDataModule):
    """A folder of photos and a folder of style images for ``AdaIN``; predict stylises images, folders or videos
    with one style image, any one.

    Args:
        content: fit: a folder of photos (COCO in real use). predict: an image, a video or a folder of both.
        style: fit: a folder of style images (WikiArt in real use), or one image. predict: the one style image.
        image_size: side of the square training crops of photos and styles (paper: 256).
        max_scale: photos are resized so their shorter side is ``image_size`` times a random factor in
            [1, ``max_scale``] before cropping.
        style_size: styles: shorter side before cropping in fit (at least ``image_size``); longer side of the
            style image in predict (``None`` keeps its size).
        predict_size: longer side of predicted images; ``None`` keeps each image's size.
        batch_size: pairs per batch (paper: 8).
        epoch_size: pairs per epoch; ``None``: one per photo.
        val_images: photos held out (a seeded choice) for validation and the logged fixed images.
        num_workers: DataLoader workers.
        seed: seed of the held-out choice.
        max_image_pixels: image files declaring more pixels are refused before decoding (decompression bombs).
        permute_colors: training only: each style crop's RGB channels in a random order, so a few style images
            give six palettes each (a network trained on few styles then handles unseen colours).
    """

    def __init__(
        self,
        content: str = "",
        style: str = "",
        image_size: PositiveInt = 256,
        max_scale: PositiveFloat = 1.0,
        style_size: PositiveInt | None = 512,
        predict_size: PositiveInt | None = None,
        batch_size: PositiveInt = 8,
        epoch_size: PositiveInt | None = None,
        val_images: NonNegativeInt = 4,
        num_workers: NonNegativeInt = 0,
        seed: int = 0,
        max_image_pixels: PositiveInt = DEFAULT_MAX_IMAGE_PIXELS,
        permute_colors: bool = False,
    ) -> None:
        super().__init__(content, style, None, image_size, max_scale, style_size, predict_size, batch_size,
                         epoch_size, val_images, num_workers, seed, max_image_pixels)  # fmt: skip
        self.style_files: list[Path] = []

    def _setup_fit(self) -> None:
        if self.style_files:
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
        self.style_files = list_images(hp.style, "--data.style")
        photos = list_images(hp.content, "--data.content")
        held_out = min(hp.val_images, len(photos) - 1)
        order = torch.randperm(len(photos), generator=torch.Generator().manual_seed(hp.seed)).tolist()
        self.val_files = sorted(photos[i] for i in order[:held_out])
        self.train_files = sorted(photos[i] for i in order[held_out:])

    def _style_crops(self, length: int, random_crop: bool) -> PhotoCrops:
        side = max(self.hparams.style_size or self.hparams.image_size, self.hparams.image_size)
        return PhotoCrops(self.style_files, side, length, random_crop, self.hparams.max_image_pixels,
                          crop=self.hparams.image_size)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        self._setup_fit()
        hp = self.hparams
        length = hp.epoch_size or len(self.train_files)
        photos = PhotoCrops(self.train_files, hp.image_size, length, True, hp.max_image_pixels, hp.max_scale)
        pairs = CropPairs(photos, self._style_crops(len(self.style_files), True), True, hp.permute_colors)
        return DataLoader(pairs, batch_size=hp.batch_size, shuffle=True, collate_fn=_pairs,
                          num_workers=hp.num_workers)  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        self._setup_fit()
        if not self.val_files:
            return []
        n = len(self.val_files)
        photos = PhotoCrops(self.val_files, self.hparams.image_size, n, False, self.hparams.max_image_pixels)
        pairs = CropPairs(photos, self._style_crops(n, False), random_pairs=False)
        return DataLoader(pairs, batch_size=n, collate_fn=_pairs)

    def predict_dataloader(self) -> DataLoader:
        files, hp = self._predict_files(), self.hparams
        styles = list_images(hp.style, "--data.style")
        if len(styles) != 1:
            raise UserError(
                f"--data.style {hp.style} holds {len(styles)} images; predict stylises with one: pass one image file"
            )
        style = resize_longer(read_rgb(styles[0], hp.max_image_pixels), hp.style_size)  # (3, h, w)
        media = MediaFiles(files, output_names(files, hp.content), hp.predict_size, hp.max_image_pixels)
        return DataLoader(
            WithStyle(media, style), batch_size=1, collate_fn=_single, num_workers=hp.num_workers
        )
