"""Callbacks: observers wired by config (image grids, metrics, progress bar, prediction files, checkpoint safety, RNG state)."""

from aigc_lightning.callbacks.checkpoint import AtomicCheckpoint, AtomicCheckpointIO
from aigc_lightning.callbacks.class_metrics import ClassAccuracy
from aigc_lightning.callbacks.images import ImageLogger, log_image_grid
from aigc_lightning.callbacks.metrics import GenerativeMetrics, evaluate_images
from aigc_lightning.callbacks.progress import ProgressBar
from aigc_lightning.callbacks.projection import ProjectionWriter
from aigc_lightning.callbacks.resume import RNGState
from aigc_lightning.callbacks.writer import ImageWriter

__all__ = [
    "AtomicCheckpoint",
    "AtomicCheckpointIO",
    "ClassAccuracy",
    "GenerativeMetrics",
    "ImageLogger",
    "ImageWriter",
    "ProgressBar",
    "ProjectionWriter",
    "RNGState",
    "evaluate_images",
    "log_image_grid",
]
