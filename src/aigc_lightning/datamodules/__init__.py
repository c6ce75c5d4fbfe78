"""DataModules. Image data is served as float32 in [-1, 1], shape (B, C, H, W); see ``images.py``."""

from aigc_lightning.datamodules.content import ContentDataModule
from aigc_lightning.datamodules.images import (
    CelebADataModule,
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)
from aigc_lightning.datamodules.seeds import SeedDataModule
from aigc_lightning.datamodules.style import StyleDataModule

__all__ = [
    "CIFAR10DataModule",
    "CelebADataModule",
    "ContentDataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "SeedDataModule",
    "StyleDataModule",
]
