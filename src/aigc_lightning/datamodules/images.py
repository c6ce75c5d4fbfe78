"""Image DataModules: every one hands out batches ``(x, y)`` with ``x`` float32 in **[-1, 1]**, shape (B, C, H, W).

[-1, 1] matches tanh generators; models that need [0, 1] (a Bernoulli VAE) convert with ``(x + 1) / 2`` in one
place of their own. With ``binarize=True`` pixels are Bernoulli samples of their [0, 1] intensity, i.e. exactly
-1 or 1: drawn afresh every time an image is served for training (dynamic binarisation, the standard MNIST
protocol) and fixed by ``seed`` for validation and test.

Small datasets (digits, MNIST, Fashion-MNIST, CIFAR-10, folders up to ``in_memory_limit`` images) are decoded
once into one uint8 tensor and served a whole batch per index operation; ``bench/data_loading.py`` measures this
at ~70x the per-item PIL path per epoch on CPU (10k MNIST PNGs). CelebA and large folders are decoded per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from aigc_lightning.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")


# ----------------------------------------------------------------------------------------------------------
# Pixel helpers


def to_model_range(x01: Tensor, binarize: bool, generator: torch.Generator | None = None) -> Tensor:
    """Map [0, 1] pixels to [-1, 1]; with ``binarize`` first draw Bernoulli(x01) (values exactly -1 or 1)."""
    if binarize:
        x01 = torch.bernoulli(x01, generator=generator)
    return x01 * 2 - 1


def fit_uint8(images: Tensor, image_size: int, channels: int) -> Tensor:
    """Resize (shorter side, antialiased), centre-crop and convert channels of a uint8 (N, C, H, W) batch."""
    x = images.float()
    if x.shape[1] != channels:
        x = convert_channels(x, channels)
    h, w = x.shape[-2:]
    if (h, w) != (image_size, image_size):
        scale = image_size / min(h, w)
        size = (max(image_size, round(h * scale)), max(image_size, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
        x = x[..., top : top + image_size, left : left + image_size]
    return x.round().clamp(0, 255).to(torch.uint8).contiguous()


def convert_channels(x: Tensor, channels: int) -> Tensor:
    """Grey → RGB by repetition, RGB → grey by ITU-R 601 luma (what PIL's ``convert("L")`` does)."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
        return (x * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    raise UserError(f"cannot convert {x.shape[1]}-channel images to {channels} channels; use channels: 1 or 3")


def load_image(path: Path, channels: int) -> Image.Image:
    """Open any PIL image as 'L' or 'RGB': palette, alpha (composited on white) and 16-bit modes are converted."""
    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise UserError(f"cannot read image file {path} ({e}); delete or replace it") from e
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit greyscale: PIL's convert("L") clips at 255 (a white 16-bit image turns white only by accident,
        # mid-greys saturate); scale the 16-bit range into 8 bits instead.
        t = np.asarray(img, dtype=np.float32)
        if img.mode.startswith("I;16") or t.max() > 255:
            t = t * (255 / 65535)
        img = Image.fromarray(np.clip(t.round(), 0, 255).astype(np.uint8))
    if img.mode == "P" or img.mode in ("LA", "PA") or (img.mode == "RGBA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("L" if channels == 1 else "RGB")


def pil_to_uint8(img: Image.Image) -> Tensor:
    """PIL 'L'/'RGB' image → uint8 tensor (C, H, W)."""
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return t.view(img.size[1], img.size[0], len(img.getbands())).permute(2, 0, 1)  # (C, H, W)


def find_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files under ``root``: class sub-folders (label = sorted folder index) or a flat folder (label 0)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"image folder {root} does not exist; pass an existing folder with --data.root")
    if not root.is_dir():
        raise UserError(f"--data.root {root} is a file; pass the folder that contains the images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise UserError(
            f"no images found in {root} (looked for {', '.join(IMAGE_EXTENSIONS)} files, also in sub-folders); "
            "point --data.root at a folder of images"
        )
    classes = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    index = {c: i for i, c in enumerate(classes)}
    labels = [index.get(p.relative_to(root).parts[0], 0) if len(p.relative_to(root).parts) > 1 else 0 for p in files]
    return files, labels, classes


# ----------------------------------------------------------------------------------------------------------
# Datasets


class TensorImages(Dataset):
    """Images held as one uint8 tensor (N, C, H, W); ``__getitems__`` serves a whole batch with one index op.

    Args:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,).
        binarize: ``None`` (grey levels), ``"dynamic"`` (fresh Bernoulli draw each time) or ``"fixed"``.
        seed: seed of the fixed binarisation.
    """

    def __init__(self, images: Tensor, labels: Tensor, binarize: str | None = None, seed: int = 0) -> None:
        self.images, self.labels, self.binarize = images, labels, binarize
        self.fixed = None
        if binarize == "fixed":
            g = torch.Generator().manual_seed(seed)
            self.fixed = to_model_range(images.float() / 255, True, g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.fixed is not None:
            x = self.fixed[idx]
        else:
            x = to_model_range(self.images[idx].float() / 255, self.binarize == "dynamic")
        return x, self.labels[idx]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]


class ImageFiles(Dataset):
    """Image files decoded per item, resized (shorter side) and centre-cropped to ``image_size``.

    Args:
        files: image paths.
        labels: one int label per file.
        image_size: output height and width.
        channels: 1 (grey) or 3 (RGB).
        binarize: ``None``, ``"dynamic"`` or ``"fixed"`` (seeded per index, so it is the same every epoch).
        seed: seed of the fixed binarisation.
        center_crop: crop the centre square of this size (original pixels) before resizing; CelebA uses 148.
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int],
        image_size: int,
        channels: int,
        binarize: str | None = None,
        seed: int = 0,
        center_crop: int | None = None,
    ) -> None:
        self.files, self.labels = list(files), list(labels)
        self.image_size, self.channels, self.binarize, self.seed = image_size, channels, binarize, seed
        self.center_crop = center_crop

    def __len__(self) -> int:
        return len(self.files)

    def load_uint8(self, index: int) -> Tensor:
        img = load_image(self.files[index], self.channels)
        if self.center_crop is not None:
            w, h = img.size
            c = min(self.center_crop, w, h)
            left, top = (w - c) // 2, (h - c) // 2
            img = img.crop((left, top, left + c, top + c))
        return fit_uint8(pil_to_uint8(img)[None], self.image_size, self.channels)[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x01 = self.load_uint8(index).float() / 255
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index) if self.binarize == "fixed" else None
        return to_model_range(x01, self.binarize is not None, g), torch.tensor(self.labels[index])


def _collate_batch(batch):
    # ``TensorImages.__getitems__`` already returns a stacked batch: nothing left to collate.
    return batch


# ----------------------------------------------------------------------------------------------------------
# DataModules


class ImageDataModule(LightningDataModule):
    """Shared base of the image DataModules: seeded train/val split, loaders, ``image_shape``.

    Subclasses implement ``load(train)`` returning the train (``train=True``) or test set, or ``None`` when the
    dataset has no separate test split (the validation split is used for testing then).

    Args:
        root: where the dataset lives (or is downloaded to).
        image_size: height = width of the served images, in pixels.
        channels: 1 (grey) or 3 (RGB); images are converted to it.
        batch_size: images per batch (per device under DDP).
        num_workers: DataLoader worker processes.
        val_fraction: share of the training set held out for validation (seeded, the same on every run).
        binarize: serve Bernoulli-binarised pixels (-1 or 1), dynamic for training, fixed for val/test.
        seed: seed of the train/val split and of the fixed binarisation.
    """

    def __init__(
        self,
        root: str = "data",
        image_size: int = 32,
        channels: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        binarize: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise UserError(f"channels must be 1 or 3, got {channels}")
        if not 0 <= val_fraction < 1:
            raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.root = Path(root).expanduser()
        self.image_size, self.channels = image_size, channels
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val_fraction, self.binarize, self.seed = val_fraction, binarize, seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the served images; the CLI links it into the model's networks."""
        return (self.channels, self.image_size, self.image_size)

    def load(self, train: bool, binarize: str | None) -> Dataset | None:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        dynamic = "dynamic" if self.binarize else None
        fixed = "fixed" if self.binarize else None
        train_full = self.load(True, dynamic)
        val_full = self.load(True, fixed) if self.binarize else train_full
        n = len(train_full)
        n_val = round(n * self.val_fraction)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        self.train_set = Subset(train_full, perm[n_val:])
        self.val_set = Subset(val_full, perm[:n_val]) if n_val else None
        test = self.load(False, fixed)
        self.test_set = test if test is not None else self.val_set

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            return []  # type: ignore[return-value]  # Lightning skips an empty loader list
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        batched = isinstance(base, TensorImages)
        if batched and isinstance(dataset, Subset):
            dataset = _SubsetBatched(dataset)
        sampler = None
        if not shuffle and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Lightning's default DistributedSampler pads the last round with repeated images, which metrics
            # would count twice; evaluation shards without repeats (ranks may get one batch more or less).
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=shuffle and len(dataset) >= self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=_collate_batch if batched else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


class _SubsetBatched(Subset):
    """A ``Subset`` of ``TensorImages`` that keeps the batched ``__getitems__`` fast path."""

    def __init__(self, subset: Subset) -> None:
        super().__init__(subset.dataset, subset.indices)

    def __getitems__(self, indices: Sequence[int]):
        return self.dataset.__getitems__([self.indices[i] for i in indices])


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
        image_size: int = 32,
        channels: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        binarize: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__("", image_size, channels, batch_size, num_workers, val_fraction, binarize, seed)

    def load(self, train: bool, binarize: str | None) -> Dataset | None:
        if not train:
            return None
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.from_numpy(digits.images).float().mul(255 / 16).round().to(torch.uint8)[:, None]  # (N, 1, 8, 8)
        images = fit_uint8(x, self.image_size, self.channels)
        return TensorImages(images, torch.from_numpy(digits.target).long(), binarize, self.seed)


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
        image_size: int = 64,
        channels: int = 3,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        binarize: bool = False,
        seed: int = 0,
        in_memory_limit: int = 100_000,
    ) -> None:
        super().__init__(root, image_size, channels, batch_size, num_workers, val_fraction, binarize, seed)
        self.in_memory_limit = in_memory_limit
        self._decoded: tuple[Tensor, Tensor] | None = None

    def load(self, train: bool, binarize: str | None) -> Dataset | None:
        if not train:
            return None
        files, labels, _ = find_images(self.root)
        per_item = ImageFiles(files, labels, self.image_size, self.channels, binarize, self.seed)
        if len(files) > self.in_memory_limit:
            return per_item
        if self._decoded is None:
            images = torch.stack([per_item.load_uint8(i) for i in range(len(files))])
            self._decoded = (images, torch.tensor(labels, dtype=torch.long))
        return TensorImages(*self._decoded, binarize, self.seed)


class _TorchvisionDataModule(ImageDataModule):
    """torchvision datasets: download in ``prepare_data``, one clear message when absent and offline."""

    dataset_name = ""
    files_hint = ""

    def __init__(
        self,
        root: str = "data",
        image_size: int = 28,
        channels: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        binarize: bool = False,
        seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__(root, image_size, channels, batch_size, num_workers, val_fraction, binarize, seed)
        self.download = download

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

    def in_memory(self, train: bool, binarize: str | None) -> TensorImages:
        ds = self._open(train)
        data = torch.as_tensor(ds.data)
        x = data[:, None] if data.ndim == 3 else data.permute(0, 3, 1, 2)  # (N, C, H, W)
        images = fit_uint8(x, self.image_size, self.channels)
        return TensorImages(images, torch.as_tensor(ds.targets, dtype=torch.long), binarize, self.seed)

    def load(self, train: bool, binarize: str | None) -> Dataset | None:
        return self.in_memory(train, binarize)


class MNISTDataModule(_TorchvisionDataModule):
    """MNIST (60k train / 10k test, 28×28 grey) via torchvision; test = the official test set.

    Args:
        root: folder holding ``MNIST/raw`` (downloaded there when ``download``).
        image_size: served size (28 native).
        channels: 1, or 3 to repeat the grey channel.
        batch_size: images per batch.
        num_workers: DataLoader workers.
        val_fraction: held-out share of the training set.
        binarize: dynamic/fixed Bernoulli binarisation (the standard VAE likelihood protocol).
        seed: split / binarisation seed.
        download: fetch the files when absent.
    """

    dataset_name = "MNIST"
    files_hint = "<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"

    def torchvision_dataset(self, train: bool, download: bool):
        from torchvision.datasets import MNIST

        return MNIST(str(self.root), train=train, download=download)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Zalando, 28×28 grey) via torchvision; same arguments as ``MNISTDataModule``."""

    dataset_name = "FashionMNIST"
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
        num_workers: DataLoader workers.
        val_fraction: held-out share of the training set.
        binarize: Bernoulli-binarised pixels.
        seed: split / binarisation seed.
        download: fetch the archive when absent.
    """

    dataset_name = "CIFAR-10"
    files_hint = "<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}"

    def __init__(
        self,
        root: str = "data",
        image_size: int = 32,
        channels: int = 3,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.02,
        binarize: bool = False,
        seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__(root, image_size, channels, batch_size, num_workers, val_fraction, binarize, seed, download)

    def torchvision_dataset(self, train: bool, download: bool):
        from torchvision.datasets import CIFAR10

        return CIFAR10(str(self.root), train=train, download=download)


class CelebADataModule(_TorchvisionDataModule):
    """CelebA aligned faces via torchvision, centre-cropped to 148 px then resized (the usual 64-px protocol).

    202,599 images: decoded per item, so raise ``num_workers`` on a real machine. Splits: torchvision's
    official train / test (``val_fraction`` of train is held out for validation).

    Args:
        root: folder holding ``celeba/img_align_celeba`` and the ``list_*.txt`` files.
        image_size: served size.
        channels: 3, or 1 for luma.
        batch_size: images per batch.
        num_workers: DataLoader workers.
        val_fraction: held-out share of the training set.
        binarize: Bernoulli-binarised pixels.
        seed: split / binarisation seed.
        download: fetch from Google Drive when absent (needs ``gdown``; often rate-limited: see torchvision).
    """

    dataset_name = "CelebA"
    files_hint = "<root>/celeba/{img_align_celeba/*.jpg,list_eval_partition.txt,identity_CelebA.txt,...}"

    def __init__(
        self,
        root: str = "data",
        image_size: int = 64,
        channels: int = 3,
        batch_size: int = 128,
        num_workers: int = 4,
        val_fraction: float = 0.01,
        binarize: bool = False,
        seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__(root, image_size, channels, batch_size, num_workers, val_fraction, binarize, seed, download)

    def torchvision_dataset(self, train: bool, download: bool):
        from torchvision.datasets import CelebA

        return CelebA(str(self.root), split="train" if train else "test", target_type=[], download=download)

    def load(self, train: bool, binarize: str | None) -> Dataset | None:
        ds = self._open(train)
        folder = Path(ds.root) / ds.base_folder / "img_align_celeba"
        files = [folder / name for name in ds.filename]
        return ImageFiles(files, [0] * len(files), self.image_size, self.channels, binarize, self.seed, 148)


__all__ = [
    "CIFAR10DataModule",
    "CelebADataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFiles",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "TensorImages",
]
