"""DataModules. Image data is served as float32 in [-1, 1], shape (B, C, H, W); see ``base.py``."""

from aigc_lightning.datamodules.base import ImageDataModule
from aigc_lightning.datamodules.content import ContentDataModule
from aigc_lightning.datamodules.images import DigitsDataModule, ImageFolderDataModule
from aigc_lightning.datamodules.moving_digits import MovingDigitsDataModule
from aigc_lightning.datamodules.projection import ProjectionDataModule
from aigc_lightning.datamodules.seeds import SeedDataModule
from aigc_lightning.datamodules.style import StyleDataModule
from aigc_lightning.datamodules.torchvision_sets import (
    CelebADataModule,
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
)
from aigc_lightning.datamodules.video_folder import VideoFolderDataModule

__all__ = [
    "CIFAR10DataModule",
    "CelebADataModule",
    "ContentDataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "MovingDigitsDataModule",
    "ProjectionDataModule",
    "SeedDataModule",
    "StyleDataModule",
    "VideoFolderDataModule",
]
