"""torchvision datasets (MNIST, Fashion-MNIST, CIFAR-10, CelebA): download in ``prepare_data``, one clear message
when a dataset is absent and offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch.utils.data import Dataset

from aigc_lightning.constraints import UnitIntervalBelowOne
from aigc_lightning.datamodules.base import ImageDataModule
from aigc_lightning.datamodules.cache import CachedImages, CacheEntry, cached_arrays, cached_files
from aigc_lightning.datamodules.datasets import ImageFiles, TensorImages
from aigc_lightning.datamodules.io import fit_uint8
from aigc_lightning.errors import UserError


class _TorchvisionDataModule(ImageDataModule):
    """torchvision datasets: download in ``prepare_data``, one clear message when absent and offline."""

    dataset_name = ""
    files_hint = ""

    def __init__(
        self, image_size: PositiveInt = 28, download: bool = True, cache_dir: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(image_size=image_size, **kwargs)
        self.download, self.cache_dir = download, cache_dir
        self._entries: dict[bool, CacheEntry] = {}  # train → its prepared cache entry (with ``cache_dir``)

    def torchvision_dataset(self, train: bool, download: bool):
        raise NotImplementedError

    def _open(self, train: bool, download: bool = False):
        try:
            return self.torchvision_dataset(train, download)
        except (RuntimeError, OSError, ValueError) as e:
            how = (
                "the download failed (are you offline?)"
                if download
                else "it is not there and download is false (--data.download true fetches it)"
            )
            raise UserError(
                f"{self.dataset_name} not found under {self.root}: {how}. Expected torchvision's layout "
                f"{self.files_hint}; copy the files there or run once with internet access. ({e})"
            ) from e

    def prepare_data(self) -> None:
        for train in (True, False):
            self._open(train, self.download)

    def cached(self, train: bool) -> CacheEntry:
        """The prepared cache entry of the train or test set (``cache_dir``), keyed by the dataset's files."""
        if train not in self._entries:
            ds = self._open(train)
            folder = Path(getattr(ds, "raw_folder", "") or Path(ds.root) / ds.base_folder)
            sources = sorted(p for p in folder.rglob("*") if p.is_file())
            shape = (len(ds.data), self.channels, self.image_size, self.image_size)

            def chunks():
                data, targets = torch.as_tensor(ds.data), torch.as_tensor(ds.targets, dtype=torch.long)
                for i in range(0, len(data), 4096):
                    x = data[i : i + 4096]
                    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (B, C, H, W)
                    yield fit_uint8(x, self.image_size, self.channels), targets[i : i + 4096]

            split = "train" if train else "test"
            self._entries[train] = cached_arrays(self.cache_dir, folder, sources, f"{self.dataset_name}-{split}",
                                                 shape, chunks)  # fmt: skip
        return self._entries[train]

    def in_memory(self, train: bool, binarize: bool, seed: int | None) -> TensorImages:
        if self.cache_dir is not None:
            return CachedImages(self.cached(train), binarize, seed)
        ds = self._open(train)
        data = torch.as_tensor(ds.data)
        x = data[:, None] if data.ndim == 3 else data.permute(0, 3, 1, 2)  # (N, C, H, W)
        images = fit_uint8(x, self.image_size, self.channels)
        return TensorImages(images, torch.as_tensor(ds.targets, dtype=torch.long), binarize, seed)

    def load(self, train: bool, binarize: bool, seed: int | None) -> Dataset | None:
        return self.in_memory(train, binarize, seed)


class MNISTDataModule(_TorchvisionDataModule):
    """MNIST (60k train / 10k test, 28×28 grey) via torchvision; test = the official test set.

    ``binarize`` gives the standard VAE likelihood protocol (dynamic binarisation for training, fixed for val/test).

    Args:
        root: folder holding ``MNIST/raw`` (downloaded there when ``download``).
        image_size: served size (28 native).
        download: fetch the files when absent.
        cache_dir: folder of the prepared dataset cache (resized pixels stored once, memory-mapped after).
        **kwargs: ``ImageDataModule``'s other arguments (channels, batch size, workers, split, binarisation, seed).
    """

    dataset_name = "MNIST"
    label_names = tuple("0123456789")
    files_hint = "<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"

    def torchvision_dataset(self, train: bool, download: bool):
        from torchvision.datasets import MNIST

        return MNIST(str(self.root), train=train, download=download)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Zalando, 28×28 grey) via torchvision; same arguments as ``MNISTDataModule``."""

    dataset_name = "FashionMNIST"
    label_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag")
    label_names += ("Ankle boot",)  # torchvision's FashionMNIST.classes
    files_hint = "<root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"

    def torchvision_dataset(self, train: bool, download: bool):
        from torchvision.datasets import FashionMNIST

        return FashionMNIST(str(self.root), train=train, download=download)


class CIFAR10DataModule(_TorchvisionDataModule):
    """CIFAR-10 (50k train / 10k test, 32×32 RGB) via torchvision.

    Args:
        root: folder holding ``cifar-10-batches-py``.
        image_size: served size (32 native).
        channels: 3, or 1 for luma.
        batch_size: images per batch.
        val_fraction: held-out share of the training set.
        **kwargs: the other arguments of ``MNISTDataModule`` (``download``, workers, binarisation, seed).
    """

    dataset_name = "CIFAR-10"
    label_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    files_hint = "<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}"

    def __init__(
        self,
        image_size: PositiveInt = 32,
        channels: Literal[1, 3] = 3,
        batch_size: PositiveInt = 128,
        val_fraction: UnitIntervalBelowOne = 0.02,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            image_size=image_size,
            channels=channels,
            batch_size=batch_size,
            val_fraction=val_fraction,
            **kwargs,
        )

    def torchvision_dataset(self, train: bool, download: bool):
        from torchvision.datasets import CIFAR10

        return CIFAR10(str(self.root), train=train, download=download)


class CelebADataModule(_TorchvisionDataModule):
    """CelebA aligned faces via torchvision, centre-cropped to 148 px then resized (the usual 64-px protocol).

    202,599 images: decoded per item (raise ``num_workers`` on a real machine), or once into ``cache_dir``.
    Splits: torchvision's official train / test (``val_fraction`` of train is held out for validation).

    Args:
        root: folder holding ``celeba/img_align_celeba`` and the ``list_*.txt`` files.
        image_size: served size.
        channels: 3, or 1 for luma.
        batch_size: images per batch.
        num_workers: DataLoader workers.
        val_fraction: held-out share of the training set.
        download: fetch from Google Drive when absent (needs ``gdown``; often rate-limited: see torchvision).
        cache_dir: folder of the prepared dataset cache (decode once, memory-map after; docs/data.md).
        **kwargs: the other arguments of ``MNISTDataModule`` (binarisation, seed).
    """

    dataset_name = "CelebA"
    files_hint = "<root>/celeba/{img_align_celeba/*.jpg,list_eval_partition.txt,identity_CelebA.txt,...}"

    def __init__(
        self,
        image_size: PositiveInt = 64,
        channels: Literal[1, 3] = 3,
        batch_size: PositiveInt = 128,
        num_workers: NonNegativeInt = 4,
        val_fraction: UnitIntervalBelowOne = 0.01,
        download: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            image_size=image_size, channels=channels, batch_size=batch_size, num_workers=num_workers,
            val_fraction=val_fraction, download=download, **kwargs,
        )  # fmt: skip

    def torchvision_dataset(self, train: bool, download: bool):
        from torchvision.datasets import CelebA

        return CelebA(str(self.root), split="train" if train else "test", target_type=[], download=download)

    def load(self, train: bool, binarize: bool, seed: int | None) -> Dataset | None:
        ds = self._open(train)
        folder = Path(ds.root) / ds.base_folder / "img_align_celeba"
        files = [folder / name for name in ds.filename]
        per_item = ImageFiles(
            files, [0] * len(files), self.image_size, self.channels, binarize, seed, center_crop=148
        )
        if self.cache_dir is None:
            return per_item
        if train not in self._entries:
            self._entries[train] = cached_files(
                self.cache_dir, folder, per_item, "-train" if train else "-test"
            )
        return CachedImages(self._entries[train], binarize, seed)


__all__ = ["CIFAR10DataModule", "CelebADataModule", "FashionMNISTDataModule", "MNISTDataModule"]
