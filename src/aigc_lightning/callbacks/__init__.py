"""Callbacks: prediction writer and image-grid logging."""

from aigc_lightning.callbacks.images import log_image_grid
from aigc_lightning.callbacks.writer import ImageWriter

__all__ = ["ImageWriter", "log_image_grid"]
