"""``ImageDataModule``: the shared base of the image DataModules (seeded split, loaders, ``image_shape``).

Every image DataModule hands out batches ``(x, y)`` with ``x`` float32 in **[-1, 1]**, shape (B, C, H, W).
Small datasets are decoded once into one uint8 tensor (``TensorImages``) and served a whole batch per index
operation; ``python -m bench data_loading`` measures this at ~70x the per-item PIL path per epoch on CPU (10k MNIST
PNGs). Large ones are decoded per item (``ImageFiles``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from aigc_lightning.constraints import UnitIntervalBelowOne
from aigc_lightning.datamodules.datasets import TensorImages
from aigc_lightning.errors import UserError


class ShardSampler(DistributedSampler):
    """Rank r of w gets items r, r + w, r + 2w, … in order: every item exactly once over all ranks.

    Lightning's default DistributedSampler pads the last round with repeated images, which metrics would count
    twice; evaluation shards without repeats instead (ranks may get one batch more or less). A
    ``DistributedSampler`` subclass, so Lightning uses it as it is instead of wrapping it in another.
    """

    def __init__(self, dataset: Dataset, rank: int, world_size: int) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=False)
        self.size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))


class _SubsetBatched(Subset):
    """A ``Subset`` of ``TensorImages`` that keeps the batched ``__getitems__`` fast path."""

    def __init__(self, subset: Subset) -> None:
        super().__init__(subset.dataset, subset.indices)

    def __getitems__(self, indices: Sequence[int]):
        return self.dataset.__getitems__([self.indices[i] for i in indices])


def _collate_batch(batch):
    # ``TensorImages.__getitems__`` already returns a stacked batch: nothing left to collate.
    return batch


class ImageDataModule(LightningDataModule):
    """Shared base of the image DataModules: seeded train/val split, loaders, ``image_shape``.

    Subclasses implement ``load(train, binarize, seed)`` returning the train (``train=True``) or test set, or
    ``None`` when the dataset has no separate test split (the validation split is used for testing then).

    Args:
        root: where the dataset lives (or is downloaded to).
        image_size: height = width of the served images, in pixels.
        channels: 1 (grey) or 3 (RGB); images are converted to it.
        batch_size: images per batch (per device under DDP).
        num_workers: DataLoader worker processes.
        val_fraction: share of the training set held out for validation, in [0, 1) (seeded, the same every run).
        binarize: serve Bernoulli-binarised pixels (-1 or 1), drawn afresh for training, fixed for val/test.
        seed: seed of the train/val split and of the fixed binarisation.
    """

    def __init__(
        self,
        root: str = "data",
        image_size: PositiveInt = 32,
        channels: Literal[1, 3] = 1,
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        val_fraction: UnitIntervalBelowOne = 0.1,
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

    label_names: tuple[str, ...] | None = None  # the fixed class names of a labelled dataset (subclasses set it)

    @property
    def class_names(self) -> list[str] | None:
        """The name of class i (label i) for labelled data, ``None`` without labels; the CLI links their number
        into a conditional model's networks (``num_classes``) and the names into the model (``class_names``)."""
        return list(self.label_names) if self.label_names else None

    @property
    def num_classes(self) -> int:
        """How many classes the labels take; 0 for unlabelled data."""
        return len(self.class_names or ())

    def require_classes(self) -> list[str]:
        """``class_names``, or one ``UserError`` line for data without labels (a conditional model needs them)."""
        names = self.class_names
        if not names:
            raise UserError(
                f"{type(self).__name__} has no class labels, which a conditional model needs; train it on labelled "
                "data (class sub-folders, MNIST, CIFAR-10, digits) or set --model.conditional false"
            )
        return names

    def load(self, train: bool, binarize: bool, seed: int | None) -> Dataset | None:
        """The train or test set; ``binarize``/``seed`` as in ``TensorImages`` (``seed=None``: fresh draws)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_full = self.load(True, self.binarize, None)
        val_full = self.load(True, True, self.seed) if self.binarize else train_full
        n = len(train_full)
        n_val = round(n * self.val_fraction)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        self.train_set = Subset(train_full, perm[n_val:])
        self.val_set = Subset(val_full, perm[:n_val]) if n_val else None
        test = self.load(False, self.binarize, self.seed)
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
            sampler = ShardSampler(dataset, dist.get_rank(), dist.get_world_size())
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


__all__ = ["ImageDataModule", "ShardSampler"]
