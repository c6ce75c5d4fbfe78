"""Prediction writer: one PNG per predicted image, plus a grid of all of them; videos go to ``callbacks/video.py``."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from jsonargparse.typing import PositiveInt
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torchvision.io import decode_image
from torchvision.utils import make_grid, save_image

from aigc_lightning.callbacks.video import write_videos
from aigc_lightning.errors import UserError


class ImageWriter(BasePredictionWriter):
    """Saves what ``predict_step`` returns — ``{"images": (B, C, H, W) in [0, 1], "names": list[str]}`` — as
    ``output_dir/<name>.png``; after the last batch, global rank 0 assembles ``output_dir/grid.png`` from every
    rank's files (names are gathered across processes, so DDP prediction gives one complete grid).

    Args:
        output_dir: folder for the PNGs (created; must not be a file).
        grid: also write ``grid.png``.
        nrow: images per grid row (``None``: about square).
    """

    def __init__(self, output_dir: str, grid: bool = True, nrow: PositiveInt | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir).expanduser()
        self.grid, self.nrow = grid, nrow
        self.names: list[str] = []
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise UserError(f"--output_dir {self.output_dir} is a file; pass a folder path (it is created)")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.names = []

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if "videos" in prediction:  # StyleNetwork: lazy stylised frames, encoded as they are pulled (no grid)
            write_videos(self.output_dir, prediction)
            return
        # Rounded like ``save_image``, but grey stays one channel (``save_image`` would write RGB).
        images = prediction["images"].detach().float().clamp(0, 1).mul(255).add(0.5).to(torch.uint8).cpu()
        for image, name in zip(images, prediction["names"]):
            Image.fromarray(image.permute(1, 2, 0).squeeze(-1).numpy()).save(self.output_dir / f"{name}.png")
            self.names.append(name)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        names = self.names
        if dist.is_available() and dist.is_initialized():
            every_rank: list[list[str]] = [[] for _ in range(dist.get_world_size())]
            dist.all_gather_object(every_rank, names)
            names = [n for rank_names in every_rank for n in rank_names]
        if not self.grid or trainer.global_rank != 0 or not names:
            return
        images = [decode_image(str(self.output_dir / f"{n}.png")).float() / 255 for n in sorted(set(names))]
        images = [i.expand(3, -1, -1) if len(i) == 1 else i for i in images]
        if len({tuple(i.shape) for i in images}) > 1:
            return  # differently sized outputs (style transfer of assorted photos): no grid
        nrow = self.nrow or max(1, round(len(images) ** 0.5))
        save_image(make_grid(torch.stack(images), nrow=nrow, padding=2), self.output_dir / "grid.png")
