"""Callbacks: prediction writer and image-grid logging."""

from aigc_lightning.callbacks.images import log_image_grid, logger_records_batch
from aigc_lightning.callbacks.resume import AtomicCheckpoint, RNGState
from aigc_lightning.callbacks.writer import ImageWriter

__all__ = ["AtomicCheckpoint", "ImageWriter", "RNGState", "log_image_grid", "logger_records_batch"]
