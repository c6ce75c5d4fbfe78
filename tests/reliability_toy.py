"""A tiny GAN-shaped LightningModule for the reliability tests (resume, faults, bad input, DDP of the machinery).

Shaped like the project's GAN on purpose: manual optimisation with two networks and two optimizers (two
optimizer steps per batch), an epoch LR schedule, an EMA copy and a batch counter kept as buffers, dropout and
noise from the torch, numpy and python RNGs — every kind of state exact resume has to carry.
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor, nn

from aigc_lightning.errors import check_finite
from aigc_lightning.seeds import randn_from_seeds


class ToyModule(LightningModule):
    """Auto-encoder trained like a GAN: encoder and decoder each take their own optimizer step per batch.

    Args:
        channels: image channels (linked from the data by the CLI).
        image_size: image height = width (linked from the data by the CLI).
        hidden: width of the code.
        optimizer_a: optimizer of the encoder.
        optimizer_b: optimizer of the decoder.
        nan_at_batch: make the loss NaN at this batch (counted from 0 over the run), to test fault handling.
        sleep: seconds to sleep per batch, so a test can kill the process mid-run.
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 8,
        hidden: int = 8,
        optimizer_a: OptimizerCallable = torch.optim.Adam,
        optimizer_b: OptimizerCallable = torch.optim.Adam,
        nan_at_batch: int | None = None,
        sleep: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.optimizer_a, self.optimizer_b = (
            optimizer_a,
            optimizer_b,
        )  # hparams hold their config, not the callables
        dim = channels * image_size * image_size
        self.image_shape = (channels, image_size, image_size)
        self.hidden = hidden
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(dim, hidden), nn.Dropout(0.3), nn.Tanh())
        self.decoder = nn.Sequential(nn.Linear(hidden, dim), nn.Tanh())
        self.register_buffer(
            "ema_decoder", torch.cat([p.detach().flatten() for p in self.decoder.parameters()])
        )
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))

    def setup(self, stage: str) -> None:
        # like the GAN: each optimizer step leaves the other network unused, which plain DDP refuses
        if stage == "fit" and isinstance(self.trainer.strategy, DDPStrategy):
            self.trainer.strategy._ddp_kwargs.setdefault("find_unused_parameters", True)

    def configure_optimizers(self):
        opt_a = self.optimizer_a(self.encoder.parameters())
        opt_b = self.optimizer_b(self.decoder.parameters())
        sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=1, gamma=0.5)
        sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=1, gamma=0.7)
        return [opt_a, opt_b], [sched_a, sched_b]

    def loss(self, x: Tensor) -> Tensor:
        noise = torch.randn_like(x) * 0.1
        jitter = 1 + 0.01 * float(np.random.rand()) + 0.01 * random.random()
        x_hat = self.decoder(self.encoder(x + noise)).view_as(x)  # (B, C, H, W)
        return ((x_hat - x) ** 2).mean() * jitter

    def training_step(self, batch, batch_idx: int) -> None:
        x, _ = batch
        opt_a, opt_b = self.optimizers()
        step = int(self.batches)
        for opt, name in ((opt_a, "train/loss_a"), (opt_b, "train/loss_b")):
            with self.toggled_optimizer(opt):
                loss = self.loss(x)
                if self.hparams.nan_at_batch is not None and step == self.hparams.nan_at_batch:
                    loss = loss * float("nan")
                check_finite(loss, name, step)
                opt.zero_grad()
                self.manual_backward(loss)
                opt.step()
            self.log(name, loss, prog_bar=False)
        flat = torch.cat([p.detach().flatten() for p in self.decoder.parameters()])
        self.ema_decoder.lerp_(flat, 0.1)
        self.batches += 1
        if self.trainer.is_last_batch:
            # epoch LR schedules step here, before the end-of-epoch checkpoint, so the checkpoint holds them
            for scheduler in self.lr_schedulers():
                scheduler.step()
        if self.hparams.sleep:
            time.sleep(self.hparams.sleep)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, _ = batch
        x_hat = self.decoder(self.encoder(x)).view_as(x)
        self.log("val/mse", ((x_hat - x) ** 2).mean(), sync_dist=True)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> Tensor:
        z = randn_from_seeds(torch.arange(seed, seed + n), (self.hidden,), self.device)
        return (self.decoder(z).view(n, *self.image_shape) + 1) / 2  # (n, C, H, W) in [0, 1]

    def predict_step(self, batch, batch_idx: int) -> dict:
        index, seeds = batch
        z = randn_from_seeds(seeds, (self.hidden,), self.device)
        images = (self.decoder(z).view(len(seeds), *self.image_shape) + 1) / 2  # (B, C, H, W)
        return {"images": images, "names": [f"{i:06d}" for i in index.tolist()]}


class SaveWeights(Callback):
    """Writes each rank's parameters (all of them, frozen EMA copies included) to ``<folder>/rank<r>.pt`` when training ends (DDP tests).

    Args:
        folder: where the files go.
    """

    def __init__(self, folder: str = ".") -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save(
            {k: v.detach().cpu() for k, v in pl_module.named_parameters()},  # BN running stats are rank-local
            f"{self.folder}/rank{trainer.global_rank}.pt",
        )


def toy_fit_args(root, epochs: int = 1, batches: int = 4, *extra: str) -> list[str]:
    """``fit`` arguments of a seconds-long CLI run of ``ToyModule`` on 8-px digits (binarised: more RNG use)."""
    return [
        "fit",
        "--seed_everything", "3",
        "--model", "reliability_toy.ToyModule",
        "--data", "aigc_lightning.datamodules.DigitsDataModule",
        "--data.image_size", "8",
        "--data.batch_size", "16",
        "--data.binarize", "true",
        "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", str(epochs),
        "--trainer.limit_train_batches", str(batches),
        "--trainer.limit_val_batches", "2",
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root),
        *extra,
    ]  # fmt: skip


class PoisonWeights(Callback):
    """Sets the decoder's weights to NaN after batch ``at_batch`` (counted from 0), to test the checkpoint guard.

    Args:
        at_batch: the batch after which the weights become NaN.
    """

    def __init__(self, at_batch: int = 2) -> None:
        self.at_batch = at_batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if int(pl_module.batches) == self.at_batch + 1:
            with torch.no_grad():
                pl_module.decoder[0].weight.fill_(float("nan"))


class RecordNames(Callback):
    """Writes the names each rank predicted to ``<folder>/names<r>.txt`` (DDP tests: every image once).

    Args:
        folder: where the files go.
    """

    def __init__(self, folder: str = ".") -> None:
        self.folder, self.names = folder, []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.names += list(outputs["names"])

    def on_predict_end(self, trainer, pl_module) -> None:
        with open(f"{self.folder}/names{trainer.global_rank}.txt", "w") as f:
            f.write("\n".join(self.names))


class RecordMetrics(Callback):
    """Writes ``trainer.callback_metrics`` after validation / test to ``<folder>/metrics<r>.pt``.

    Args:
        folder: where the files go.
    """

    def __init__(self, folder: str = ".") -> None:
        self.folder = folder

    def _save(self, trainer) -> None:
        metrics = {k: v.detach().cpu().double() for k, v in trainer.callback_metrics.items()}
        torch.save(metrics, f"{self.folder}/metrics{trainer.global_rank}.pt")

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._save(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._save(trainer)
