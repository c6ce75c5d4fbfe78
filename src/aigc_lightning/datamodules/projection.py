"""Inputs of StyleGAN2 projection: target images (fit) and saved latents (predict).

fit: each target is served ``steps`` times in a row, one image per batch, as a dict ``image`` (1, C, H, W) in
[-1, 1] at its own size (the ``Projector`` crops and resizes it to its generator), ``name``, ``step``, ``steps``
and ``pad``. Under DDP the targets are dealt out like cards (rank r gets targets r, r + w, …), so each is
projected exactly once; a rank with one target fewer serves ``pad`` batches to stay in step with the others.
predict: each latent file (``.pt`` from fit) once, as ``ws`` (num_ws, w_dim), ``noise`` and ``name``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from jsonargparse.typing import PositiveInt
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from aigc_lightning.datamodules.io import (
    IMAGE_EXTENSIONS,
    PredictPlan,
    list_files,
    load_image,
    output_names,
    pil_to_uint8,
)
from aigc_lightning.errors import UserError
from aigc_lightning.pixels import to_signed
from aigc_lightning.torch_files import load_tensors


class TargetSteps(Dataset):
    """Item k = target ``k // steps`` at step ``k % steps``; ``None`` targets are padding."""

    def __init__(self, files: list[Path | None], names: list[str], steps: int) -> None:
        self.files, self.names, self.steps = files, names, steps
        self._cache: tuple[int, Tensor] | None = None  # the target being served: read once, not per step

    def __len__(self) -> int:
        return len(self.files) * self.steps

    def __getitem__(self, index: int) -> dict[str, Any]:
        i, step = divmod(index, self.steps)
        item = {"name": self.names[i], "step": step, "steps": self.steps, "pad": self.files[i] is None}
        if self.files[i] is None:
            return {**item, "image": torch.zeros(3, 1, 1)}
        if self._cache is None or self._cache[0] != i:
            rgb = pil_to_uint8(load_image(self.files[i], 3)).float() / 255  # (3, H, W) in [0, 1]
            self._cache = (i, to_signed(rgb))
        return {**item, "image": self._cache[1]}


class InOrder(DistributedSampler):
    """All items of an already per-rank dataset, in order (a DistributedSampler, so Lightning does not add one)."""

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(dataset, num_replicas=1, rank=0, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.dataset)))

    def __len__(self) -> int:
        return len(self.dataset)


class Latents(Dataset):
    """One saved latent per item, rank r of w taking files r, r + w, …"""

    def __init__(self, files: list[Path], names: list[str]) -> None:
        self.files, self.names = files, names

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        obj = load_tensors(self.files[index], "latent file", "a .pt written by projection (fit)")
        obj = obj if isinstance(obj, dict) else {"ws": obj}
        if not isinstance(obj.get("ws"), Tensor):
            raise UserError(f"latent file {self.files[index]} has no 'ws' tensor; pass a .pt written by fit")
        return {"ws": obj["ws"].float(), "noise": dict(obj.get("noise") or {}), "name": self.names[index]}


class ProjectionDataModule(LightningDataModule):
    """Targets for ``fit`` (projection) and saved latents for ``predict`` (see the module docstring).

    Args:
        target: fit: an image file or a folder of images (searched recursively) to project.
        steps: fit: optimisation steps (batches) per target (NVlabs: 1000).
        latent: predict: a latent ``.pt`` written by fit, or a folder of them.
        num_workers: DataLoader workers.
    """

    def __init__(self, target: str = "", steps: PositiveInt = 1000, latent: str = "", num_workers: int = 0) -> None:
        super().__init__()
        self.target, self.steps, self.latent, self.num_workers = target, steps, latent, num_workers

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        files = list_files(self.target, IMAGE_EXTENSIONS, "--data.target", "an image file")
        names = output_names(files, self.target)
        if len(set(names)) != len(names):
            raise UserError(f"--data.target {self.target} holds files with the same output name; rename them")
        rank, world = self._rank()
        per_rank = -(-len(files) // world)  # ceil: every rank serves as many batches
        mine = list(range(rank, len(files), world))
        shard_files: list[Path | None] = [files[i] for i in mine] + [None] * (per_rank - len(mine))
        shard_names = [names[i] for i in mine] + [""] * (per_rank - len(mine))
        data = TargetSteps(shard_files, shard_names, self.steps)
        return DataLoader(data, batch_size=1, sampler=InOrder(data), num_workers=self.num_workers)

    def predict_plan(self) -> PredictPlan:
        """``OUT/<name>.png`` per latent file, from the file list alone, for the writer's checks before any work."""
        files = list_files(self.latent, (".pt",), "--data.latent", "a latent .pt written by projection")
        return PredictPlan.of_files(files, output_names(files, self.latent), [self.latent])

    def predict_dataloader(self) -> DataLoader:
        files = list_files(self.latent, (".pt",), "--data.latent", "a latent .pt written by projection")
        names = output_names(files, self.latent)
        rank, world = self._rank()
        mine = list(range(rank, len(files), world))
        data = Latents([files[i] for i in mine], [names[i] for i in mine])
        return DataLoader(data, batch_size=1, sampler=InOrder(data), num_workers=self.num_workers)


__all__ = ["ProjectionDataModule"]
