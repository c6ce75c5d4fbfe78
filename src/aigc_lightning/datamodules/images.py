"""In-house image data: scikit-learn's digits (offline) and any folder of images."""

from __future__ import annotations

from typing import Literal

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch import Tensor
from torch.utils.data import Dataset

from aigc_lightning.constraints import UnitIntervalBelowOne
from aigc_lightning.datamodules.base import ImageDataModule
from aigc_lightning.datamodules.datasets import ImageFiles, TensorImages
from aigc_lightning.datamodules.io import find_images, fit_uint8


class DigitsDataModule(ImageDataModule):
    """scikit-learn's 1,797 handwritten digits (8×8, 17 grey levels), upsampled; ships with scikit-learn, offline.

    Args:
        image_size: upsampled size (bilinear, antialiased).
        channels: 1, or 3 to repeat the grey channel.
        batch_size: images per batch.
        num_workers: DataLoader workers (0 is fastest for an in-memory set).
        val_fraction: held-out share used for validation and test.
        binarize: Bernoulli-binarised pixels.
        seed: split / binarisation seed.
    """

    def __init__(
        self,
        image_size: PositiveInt = 32,
        channels: Literal[1, 3] = 1,
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        val_fraction: UnitIntervalBelowOne = 0.1,
        binarize: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            root="",
            image_size=image_size,
            channels=channels,
            batch_size=batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            binarize=binarize,
            seed=seed,
        )
        self._decoded: tuple[Tensor, Tensor] | None = None

    def load(self, train: bool, binarize: bool, seed: int | None) -> Dataset | None:
        if not train:
            return None
        if self._decoded is None:  # once: binarised data loads the set twice (training and fixed validation draws)
            from sklearn.datasets import load_digits

            digits = load_digits()
            x = torch.from_numpy(digits.images).float().mul(255 / 16).round().to(torch.uint8)[:, None]  # (N, 1, 8, 8)
            images = fit_uint8(x, self.image_size, self.channels)
            self._decoded = (images, torch.from_numpy(digits.target).long())
        return TensorImages(*self._decoded, binarize, seed)


class ImageFolderDataModule(ImageDataModule):
    """Any folder of images: class sub-folders (labels by sorted name) or flat; png/jpg/webp/bmp/gif/tif.

    Images are converted to ``channels`` (alpha composited on white, 16-bit scaled), resized on the shorter side
    and centre-cropped to ``image_size``. Folders of at most ``in_memory_limit`` images are decoded once at setup.

    Args:
        root: the folder.
        image_size: output height = width.
        channels: 1 or 3.
        batch_size: images per batch.
        num_workers: DataLoader workers (useful only for large folders decoded per item).
        val_fraction: held-out share used for validation and test.
        binarize: Bernoulli-binarised pixels.
        seed: split / binarisation seed.
        in_memory_limit: largest folder (in images) decoded once into memory.
    """

    def __init__(
        self,
        root: str = "data/images",
        image_size: PositiveInt = 64,
        channels: Literal[1, 3] = 3,
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        val_fraction: UnitIntervalBelowOne = 0.1,
        binarize: bool = False,
        seed: int = 0,
        in_memory_limit: NonNegativeInt = 100_000,
    ) -> None:
        super().__init__(
            root=root,
            image_size=image_size,
            channels=channels,
            batch_size=batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            binarize=binarize,
            seed=seed,
        )
        self.in_memory_limit = in_memory_limit
        self._decoded: tuple[Tensor, Tensor] | None = None

    def load(self, train: bool, binarize: bool, seed: int | None) -> Dataset | None:
        if not train:
            return None
        files, labels, _ = find_images(self.root)
        per_item = ImageFiles(files, labels, self.image_size, self.channels, binarize, seed)
        if len(files) > self.in_memory_limit:
            return per_item
        if self._decoded is None:
            images = torch.stack([per_item.load_uint8(i) for i in range(len(files))])
            self._decoded = (images, torch.tensor(labels, dtype=torch.long))
        return TensorImages(*self._decoded, binarize, seed)


__all__ = ["DigitsDataModule", "ImageFolderDataModule"]
