"""A tiny generative LightningModule for CLI tests (importable as ``tiny_models.TinyGenerator``)."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import nn

from aigc_lightning.seeds import randn_from_seeds


class TinyNet(nn.Module):
    """Latent → image through one linear layer; records the shape the CLI linked into it."""

    def __init__(self, channels: int = 3, image_size: int = 4, latent_dim: int = 4) -> None:
        super().__init__()
        self.channels, self.image_size, self.latent_dim = channels, image_size, latent_dim
        self.fc = nn.Linear(latent_dim, channels * image_size * image_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z).view(-1, self.channels, self.image_size, self.image_size)  # (B, C, H, W)


class TinyGenerator(LightningModule):
    """Fits the batch mean with a one-layer generator; enough to exercise fit, checkpoints and predict."""

    def __init__(self, net: nn.Module, optimizer: OptimizerCallable = torch.optim.SGD) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net, self.optimizer = net, optimizer
        self.seen_shapes: list[tuple[int, ...]] = []

    def training_step(self, batch, batch_idx):
        x, _ = batch
        self.seen_shapes.append(tuple(x.shape))
        z = torch.randn(len(x), self.net.latent_dim, device=x.device)
        loss = (self.net(z) - x).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return self.optimizer(self.parameters(), lr=0.01)

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        seeds = torch.arange(n) + (seed if seed is not None else int(torch.randint(0, 2**31, ())))
        return (self.net(randn_from_seeds(seeds, (self.net.latent_dim,), self.device)).tanh() + 1) / 2

    def predict_step(self, batch, batch_idx):
        index, seeds = batch
        images = (self.net(randn_from_seeds(seeds, (self.net.latent_dim,), self.device)).tanh() + 1) / 2
        return {"images": images, "names": [f"{i:06d}" for i in index.tolist()]}
