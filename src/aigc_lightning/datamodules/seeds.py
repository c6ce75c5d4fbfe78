"""Seeds as data: ``predict`` for generative models iterates over seeds, so sample *i* always comes from seed S+i."""

from __future__ import annotations

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from aigc_lightning.datamodules.io import PredictPlan


class SeedDataset(Dataset):
    """Items ``(index, seed)`` for ``index`` in ``range(num_samples)`` and ``seed = first_seed + index``; with a
    class ``label``, ``(index, seed, label)`` (a conditional model's samples of that class)."""

    def __init__(self, num_samples: int, first_seed: int = 0, label: int | None = None) -> None:
        self.num_samples, self.first_seed, self.label = num_samples, first_seed, label

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[int, ...]:
        seeded = (index, self.first_seed + index)
        return seeded if self.label is None else (*seeded, self.label)


class SeedDataModule(LightningDataModule):
    """The predict data of generative models: ``num_samples`` seeds from ``seed`` on, in batches.

    Args:
        num_samples: how many samples to generate.
        seed: seed of sample 0; sample i uses seed + i.
        batch_size: seeds per ``predict_step``.
        label: the class of every sample (conditional models, ``predict --class_label``); ``None``: the model's
            default (class i mod num_classes).
    """

    def __init__(self, num_samples: int = 64, seed: int = 0, batch_size: int = 64, label: int | None = None) -> None:
        super().__init__()
        self.num_samples, self.seed, self.batch_size, self.label = num_samples, seed, batch_size, label

    def predict_plan(self) -> PredictPlan:
        """``000000.png`` … (the modules name sample i ``f"{i:06d}"``) and ``grid.png``; no inputs."""
        names = [f"{i:06d}.png" for i in range(self.num_samples)] + ["grid.png"]
        return PredictPlan({name: [] for name in names}, [])

    def predict_dataloader(self) -> DataLoader:
        dataset = SeedDataset(self.num_samples, self.seed, self.label)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False)
