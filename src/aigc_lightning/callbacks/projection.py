"""Writes each projection when its last optimisation step is done: ``<run dir>/projections/<name>.png`` (the
projected image) and ``<name>.pt`` (its latent: ``ws``, ``noise``, the pixel ``mse`` and the ``w_avg`` image's)."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from PIL import Image


class ProjectionWriter(Callback):
    """Saves ``pl_module.projection()`` after the last step of every target (each rank its own targets).

    Args:
        dirname: sub-folder of the run directory (the logger's version folder, else ``default_root_dir``).
    """

    def __init__(self, dirname: str = "projections") -> None:
        self.dirname = dirname
        self.folder: Path | None = None
        self.written: list[str] = []

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # trainer.log_dir broadcasts from rank 0: read it here, where every rank calls it at the same time
        self.folder = Path(trainer.log_dir or trainer.default_root_dir) / self.dirname
        self.written = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        if bool(batch["pad"][0]) or int(batch["step"][0]) != int(batch["steps"][0]) - 1:
            return
        result = pl_module.projection()
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        image = result["image"][0].float().mul(255).add(0.5).clamp(0, 255).to(torch.uint8).cpu()  # (C, H, W)
        Image.fromarray(image.permute(1, 2, 0).squeeze(-1).numpy()).save(self.folder / f"{result['name']}.png")
        torch.save(result["latent"], self.folder / f"{result['name']}.pt")
        self.written.append(result["name"])


__all__ = ["ProjectionWriter"]
