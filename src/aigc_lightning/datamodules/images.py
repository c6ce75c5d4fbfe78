"""In-house image data: scikit-learn's digits (offline) and any folder of images."""

from __future__ import annotations

from typing import Any, Literal

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch import Tensor
from torch.utils.data import Dataset

from aigc_lightning.datamodules.base import ImageDataModule
from aigc_lightning.datamodules.cache import CachedImages, cached_files
from aigc_lightning.datamodules.datasets import ImageFiles, TensorImages
from aigc_lightning.datamodules.io import find_images, fit_uint8
from aigc_lightning.errors import UserError


class DigitsDataModule(ImageDataModule):
    """scikit-learn's 1,797 handwritten digits (8×8, 17 grey levels), upsampled; ships with scikit-learn, offline.

    The held-out ``val_fraction`` serves validation and test (the set has no test split). Arguments as
    ``ImageDataModule`` (``image_size`` is the upsampled size, bilinear and antialiased), without ``root``.

    Args:
        **kwargs: ``ImageDataModule``'s arguments but ``root``.
    """

    label_names = tuple("0123456789")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(root="", **kwargs)
        self._decoded: tuple[Tensor, Tensor] | None = None

    def load(self, train: bool, binarize: bool, seed: int | None) -> Dataset | None:
        if not train:
            return None
        if (
            self._decoded is None
        ):  # once: binarised data loads the set twice (training and fixed validation draws)
            from sklearn.datasets import load_digits

            digits = load_digits()
            x = (
                torch.from_numpy(digits.images).float().mul(255 / 16).round().to(torch.uint8)[:, None]
            )  # (N, 1, 8, 8)
            images = fit_uint8(x, self.image_size, self.channels)
            self._decoded = (images, torch.from_numpy(digits.target).long())
        return TensorImages(*self._decoded, binarize, seed)


class ImageFolderDataModule(ImageDataModule):
    """Any folder of images: class sub-folders (labels by sorted name) or flat; png/jpg/webp/bmp/gif/tif.

    Images are converted to ``channels`` (alpha composited on white, 16-bit scaled), resized on the shorter side
    and centre-cropped to ``image_size``. Folders of at most ``in_memory_limit`` images are decoded once at setup.
    The held-out ``val_fraction`` serves validation and test.

    Args:
        root: the folder.
        image_size: output height = width.
        channels: 1 or 3.
        in_memory_limit: largest folder (in images) decoded once into memory (without ``cache_dir``).
        cache_dir: folder of the prepared dataset cache: the images are decoded once (in parallel), stored as
            uint8 pixels and memory-mapped by every later run; rebuilt when the folder, size or channels change
            (``datamodules/cache.py``, docs/data.md). ``None``: no cache.
        **kwargs: ``ImageDataModule``'s other arguments (batch size, workers, split, binarisation, seed).
    """

    def __init__(
        self,
        root: str = "data/images",
        image_size: PositiveInt = 64,
        channels: Literal[1, 3] = 3,
        in_memory_limit: NonNegativeInt = 100_000,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, image_size=image_size, channels=channels, **kwargs)
        self.in_memory_limit, self.cache_dir = in_memory_limit, cache_dir
        self._entry = None
        self._decoded: tuple[Tensor, Tensor] | None = None

    @property
    def class_names(self) -> list[str] | None:
        """The class sub-folders' names, sorted (label i = the i-th); ``None`` for a flat folder."""
        return find_images(self.root)[2] or None

    def require_classes(self) -> list[str]:
        files, _, names = find_images(self.root)
        loose = next((f for f in files if f.parent == self.root), None)
        if not names or loose is not None:
            found = f"{loose.name} lies directly in it" if names else "it has no class sub-folders"
            raise UserError(
                f"image folder {self.root} cannot label a conditional model's data: {found}; put every image in "
                f"one sub-folder per class ({self.root}/<class name>/<image>, labels by sorted folder name)"
            )
        return names

    def load(self, train: bool, binarize: bool, seed: int | None) -> Dataset | None:
        if not train:
            return None
        files, labels, _ = find_images(self.root)
        per_item = ImageFiles(files, labels, self.image_size, self.channels, binarize, seed)
        if self.cache_dir is not None:
            if self._entry is None:  # opened once: binarised data loads the set twice
                self._entry = cached_files(self.cache_dir, self.root, per_item)
            return CachedImages(self._entry, binarize, seed)
        if len(files) > self.in_memory_limit:
            return per_item
        if self._decoded is None:
            images = torch.stack([per_item.load_uint8(i) for i in range(len(files))])
            self._decoded = (images, torch.tensor(labels, dtype=torch.long))
        return TensorImages(*self._decoded, binarize, seed)


__all__ = ["DigitsDataModule", "ImageFolderDataModule"]
