"""GAN training with manual, alternating optimizer steps: ``n_critic`` discriminator steps, then one generator step.

The recipe is made of small objects a config picks by ``class_path`` (docs/gan.md): the adversarial game
(``loss``: ``gan_losses``), the latent path (``latents``: ``gan_latents``, StyleGAN2's mapping, style mixing and
w-truncation), the lazy regularisers (``r1``, ``path_length``: ``gan_regularizers``) and ADA's p (``ada``:
``augment.AdaController``). This module owns only the alternation, the EMA generator and sampling.

Schedules (lazy R1, path length, EMA ramp-up, ``lr_scheduler``) run on this module's own **batch** counter:
``trainer.global_step`` counts optimizer steps, i.e. ``n_critic + 1`` per batch, so ``--trainer.max_steps N`` stops
after ``N / (n_critic + 1)`` batches. Logged scalars use Lightning's batch x-axis too, every ``log_every_n_steps``
batches.

Multi-GPU: Lightning's ``ddp`` wraps the whole LightningModule in one ``DistributedDataParallel``. A D step never
reaches G's parameters (and the G step leaves D's frozen), which that wrapper treats as an error unless
``find_unused_parameters=True`` (Lightning issues #20328, #20866). Configs that run on several devices say
``strategy: ddp_find_unused_parameters_true``; so must a Python ``Trainer``. The class attribute
``ddp_find_unused_parameters`` tells the CLI to switch it on for a plain ``--trainer.strategy ddp`` (or ``auto`` on
several devices) too. ``python -m bench overhead --ddp`` measures what it costs.

Regularisers join the loss of the step they fall on (NVlabs takes an extra step), so each loss uses every parameter
of its network; p, the path-length mean and ``w_avg`` are saved for exact resume.

Image grids (samples from fixed seeds, a latent interpolation) are drawn by the ``ImageLogger`` callback from
``images_to_log``; FID/KID/IS by the ``GenerativeMetrics`` callback from ``sample``.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

from aigc_lightning import compat
from aigc_lightning.augment import AdaController, augment_with_probability, parse_policy
from aigc_lightning.constraints import UnitIntervalBelowOne
from aigc_lightning.errors import UserError, check_finite, checked_optimizer
from aigc_lightning.gan_latents import GaussianLatents, LabelledGenerator, Latents, call_generator
from aigc_lightning.gan_losses import AdversarialLoss, NonSaturating
from aigc_lightning.gan_regularizers import R1, PathLength
from aigc_lightning.labels import network_classes, resolve_labels
from aigc_lightning.lazy import apply_lazy_correction
from aigc_lightning.modules.gan_renamed import renamed_option_line
from aigc_lightning.modules.hparams import PlainHyperparameters
from aigc_lightning.modules.pretrained import PretrainedMixin
from aigc_lightning.nets.stylegan2 import networks_from_rosinality
from aigc_lightning.pixels import to_unit
from aigc_lightning.schedules import build_scheduler, run_batches
from aigc_lightning.seeds import interpolation_latents, randn_from_seeds


class GAN(PlainHyperparameters, PretrainedMixin, LightningModule):
    """Generative adversarial network with an EMA generator, lazy regularisers, DiffAugment / ADA and truncation.

    Args:
        generator: maps z (B, ``generator.latent_dim``) to images (B, C, H, W) in [-1, 1].
        discriminator: maps images to one logit per image, shape (B,).
        optimizer_g: optimizer factory for the generator (DCGAN: Adam, lr 2e-4, betas (0.5, 0.999)).
        optimizer_d: optimizer factory for the discriminator.
        lr_scheduler: learning-rate scheduler factory, built once for each optimizer and stepped once per batch,
            e.g. ``aigc_lightning.schedules.LinearDecay`` (both rates fall linearly over the last fraction of the
            run); a ``total_steps`` left unset is the run's length in batches. ``null``: constant rates.
        loss: the adversarial game (``aigc_lightning.gan_losses``): ``NonSaturating`` (``null``), ``Hinge`` or
            ``WassersteinGP`` (with its ``gp_weight``; use a discriminator without batch norm).
        latents: how latents reach the generator (``aigc_lightning.gan_latents``): ``GaussianLatents`` (``null``:
            z into ``G(z)``) or ``StyleLatents`` (StyleGAN2: style mixing, truncation in w around ``w_avg``).
        n_critic: discriminator steps per batch (each with fresh z, on the same real batch) before one G step.
        r1: lazy R1 penalty on real images (``aigc_lightning.gan_regularizers.R1``); ``null`` for none.
        path_length: StyleGAN2's lazy path-length penalty (``aigc_lightning.gan_regularizers.PathLength``, needs
            ``StyleLatents``); ``null`` for none.
        augment: DiffAugment policy applied to real and fake images before D, e.g. ``color,translation,cutout``;
            empty or ``null`` for none. Helps small datasets.
        ada: ADA (``aigc_lightning.augment.AdaController``): apply ``augment`` to each image with a probability p
            steered by D's overfitting; ``null`` applies ``augment`` always.
        ema_decay: decay of the generator's exponential moving average (used for sampling and metrics), in
            [0, 1); 0 makes the EMA generator a copy of the trained one.
        ema_warmup: EMA ramp-up: the decay at batch t is ``min(ema_decay, (1 + t) / (ema_warmup + t))`` so early,
            random weights are forgotten quickly.
        truncation_psi: the truncation trick: latents are pulled toward the centre, ``centre + psi * (z - centre)``
            (in w for ``StyleLatents``), psi >= 0; 1 disables it, the AIGC article's setting is 0.7. Used by ``sample``
            and predict.
        mean_latent_samples: number of latents the truncation centre of ``GaussianLatents`` is estimated from
            (once, with a fixed seed).
        bn_stat_batches: batches of 64 fixed latents that re-estimate the EMA generator's batch-norm statistics
            before sampling (BigGAN's "standing statistics"); averaged weights need statistics of their own.
        noise_mode: StyleGAN2 noise for sampling and predict: ``const`` (stored noise: an image depends on its seed
            alone), ``random`` (from torch's global generator) or ``none``.
        generator_checkpoint: a rosinality/stylegan2-pytorch ``.pt`` whose ``g_ema`` + ``latent_avg`` (and ``d`` if
            present) replace the configured networks, architecture read off the file (pretrained predict, fine-tune).
        conditional: train on the data's labels; the CLI links ``num_classes`` and ``class_names`` (docs/conditional.md).
        class_names: the name of each class (the CLI fills it from the data), for ``predict --class_label NAME``.
    """

    # the CLI's unknown-key error asks the class about options of older configs (cli_errors.py)
    renamed_option_line = staticmethod(renamed_option_line)
    # one DDP wrapper around G and D sees unused parameters in every step (module docstring)
    ddp_find_unused_parameters = True

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_g: OptimizerCallable = torch.optim.Adam,
        optimizer_d: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        loss: AdversarialLoss | None = None,
        latents: Latents | None = None,
        n_critic: PositiveInt = 1,
        r1: R1 | None = None,
        path_length: PathLength | None = None,
        augment: str | None = None,
        ada: AdaController | None = None,
        ema_decay: UnitIntervalBelowOne = 0.999,
        ema_warmup: PositiveInt = 10,
        truncation_psi: NonNegativeFloat = 1.0,
        mean_latent_samples: PositiveInt = 4096,
        bn_stat_batches: NonNegativeInt = 16,
        noise_mode: Literal["random", "const", "none"] = "const",
        generator_checkpoint: str | None = None,
        conditional: bool = False,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if n_critic < 1 or ema_warmup < 1:
            raise UserError(f"n_critic and ema_warmup must be >= 1, got {n_critic}, {ema_warmup}")
        if not 0 <= ema_decay < 1:
            raise UserError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if loss is not None and not isinstance(loss, AdversarialLoss):
            raise UserError(
                f"model.loss must be an aigc_lightning.gan_losses object (NonSaturating(), Hinge(), "
                f"WassersteinGP(gp_weight)), got {loss!r}"
            )
        # Networks and recipe objects stay in the hyperparameters as their class_path configs under LightningCLI,
        # which is what lets ``GAN.load_from_checkpoint(path)`` rebuild the model without arguments.
        self.save_hyperparameters()
        self.automatic_optimization = False
        if generator_checkpoint is not None:
            # the file's architecture wins over the configured one; a grey config (channels 1) gets grey nets
            generator, file_d = networks_from_rosinality(generator_checkpoint, getattr(generator, "channels", None))
            discriminator = file_d or discriminator
        self.generator, self.discriminator = generator, discriminator
        self.loss = loss if loss is not None else NonSaturating()
        self.latents = latents if latents is not None else GaussianLatents()
        self.latents.check(generator)
        self.num_classes = network_classes(generator, discriminator, conditional)  # 0: unconditional
        self.r1, self.path_length = r1, path_length
        if path_length is not None and not self.latents.gives_ws:
            raise UserError(
                "model.path_length needs the ws of a StyleGAN2 generator: set model.latents to "
                "aigc_lightning.gan_latents.StyleLatents, or drop model.path_length"
            )
        # The EMA generator is a frozen submodule, so it is in every checkpoint's state_dict. Lightning's
        # WeightAveraging callback averages the whole LightningModule (G and D) and swaps it in only during
        # validation, while sampling and metrics need an averaged G alone, at any time: hence this small piece.
        self.generator_ema = copy.deepcopy(generator).requires_grad_(False)
        self.optimizer_g, self.optimizer_d, self.lr_scheduler = optimizer_g, optimizer_d, lr_scheduler
        self.augment = parse_policy(augment)  # the parsed policy; hparams keep the string
        if ada is not None and not self.augment:
            raise UserError("model.ada adapts the probability of the augment policy; set --model.augment too")
        self.ada = ada
        self.latent_dim: int = generator.latent_dim
        # Counters, in checkpoint["counters"] for exact resume
        self.batches = 0  # training batches done (the x-axis of every schedule)
        self.d_steps = 0  # discriminator steps done (lazy R1 schedule)
        self._ema_stale = True  # EMA weights changed since its BN statistics / mean latent were computed
        self._mean_latent: Tensor | None = None

    # ------------------------------------------------------------------------------------------------------
    # Lightning hooks

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.trainer.world_size > 1:
            # seed_everything gives every rank the same seed, hence the same z and augmentations: the ranks would
            # all show D the same fakes. A per-rank offset keeps runs reproducible and the fakes distinct.
            torch.manual_seed(torch.initial_seed() + 1_000_003 * self.trainer.global_rank)

    def configure_optimizers(self) -> Any:
        opt_g = checked_optimizer(self.optimizer_g, self.generator.parameters(), "model.optimizer_g")
        opt_d = checked_optimizer(self.optimizer_d, self.discriminator.parameters(), "model.optimizer_d")
        # built fresh each fit; a resumed run then loads the saved groups
        for regulariser, opt in ((self.path_length, opt_g), (self.r1, opt_d)):
            if regulariser is not None and (interval := regulariser.correction_interval()) is not None:
                apply_lazy_correction(opt, interval)
        if self.lr_scheduler is None:
            return [opt_g, opt_d]

        def batches() -> int:  # the run's length in batches, for a scheduler whose total_steps is unset
            return run_batches(self.trainer, self.hparams.n_critic + 1)

        return [opt_g, opt_d], [build_scheduler(self.lr_scheduler, opt, batches) for opt in (opt_g, opt_d)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        counters = {"batches": self.batches, "d_steps": self.d_steps}
        for state in (self.path_length, self.ada):  # the path-length mean; p and its running sums
            counters.update({} if state is None else state.state_dict())
        checkpoint["counters"] = counters
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        counters = checkpoint.get("counters", {})
        self.batches, self.d_steps = counters.get("batches", 0), counters.get("d_steps", 0)
        for state in (self.path_length, self.ada):
            if state is not None:
                state.load_state_dict(counters)
        self._ema_stale = True

    # ------------------------------------------------------------------------------------------------------
    # Training

    def _augment(self, x: Tensor) -> Tensor:  # DiffAugment on every image, or with ADA's probability p
        return augment_with_probability(x, self.augment, 1.0 if self.ada is None else self.ada.p)

    def _critic(self, y: Tensor | None) -> Any:  # D at fixed labels (conditional), called as D(x)
        return self.discriminator if y is None else (lambda x: self.discriminator(x, y))

    def _d(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self._critic(y)(self._augment(x))

    def _fake(self, n: int, device: torch.device, y: Tensor | None = None) -> tuple[Tensor, Any, Tensor | None]:
        """``n`` fakes, their ws (or None) and labels: ``y``, else uniform draws (distinct per DDP rank: ``setup``)."""
        if self.num_classes and y is None:
            y = torch.randint(self.num_classes, (n,), device=device)
        return (*self.latents.fakes(self.generator, n, device, y), y)

    def _all_reduce(self, x: Tensor, op: str = "sum") -> Tensor:  # over DDP ranks; the identity on one device
        return self.trainer.strategy.reduce(x.to(self.device), reduce_op=op).cpu()

    def discriminator_step(self, real: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One D update on ``real`` (labels ``y``) and fakes of the same labels; returns the (detached) values to log."""
        opt_d = self.optimizers()[1]
        with self.toggled_optimizer(opt_d):
            fake = self._fake(real.shape[0], real.device, y)[0].detach()
            real_logits, fake_logits = self._d(real, y), self._d(fake, y)
            if self.ada is not None:
                self.ada.accumulate(real_logits)
            loss = self.loss.discriminator_loss(real_logits.float(), fake_logits.float()).mean()
            logs = {"d_real": real_logits.detach().float().mean(), "d_fake": fake_logits.detach().float().mean()}
            gp = self.loss.penalty(self._critic(y), real, fake)
            if gp is not None:
                gp = gp.mean()
                loss = loss + self.loss.penalty_weight * gp
                logs["gp"] = gp.detach()
            if self.r1 is not None and self.r1.due(self.d_steps):
                # on the images D actually sees (augmented when DiffAugment is on)
                r1 = self.r1(self._critic(y), self._augment(real)).mean()
                loss = loss + self.r1.scale(r1)
                logs["r1"] = r1.detach()
            check_finite(loss, "train/d_loss", self.batches)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt_d.step()
        self.d_steps += 1
        logs["d_loss"] = loss.detach()
        return logs

    def generator_step(self, batch_size: int, device: torch.device) -> dict[str, Tensor]:
        """One G update (plus the lazy path-length term when it is due); returns values to log."""
        opt_g = self.optimizers()[0]
        with self.toggled_optimizer(opt_g):
            fake, _, y = self._fake(batch_size, device)
            loss = self.loss.generator_loss(self._d(fake, y).float()).mean()
            logs = {}
            pl = self.path_length
            if pl is not None and pl.due(self.batches):
                images, ws, _ = self._fake(pl.batch_size(batch_size), device)
                penalty = pl(images, ws, lambda x: self._all_reduce(x, "mean")).mean()
                loss = loss + pl.scale(penalty)
                logs = {"pl_penalty": penalty.detach(), "pl_mean": torch.tensor(pl.mean)}
            check_finite(loss, "train/g_loss", self.batches)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt_g.step()
        return {"g_loss": loss.detach(), **logs}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real, y = batch[0], (batch[1] if self.num_classes else None)
        for _ in range(self.hparams.n_critic):
            logs = self.discriminator_step(real, y)
        logs.update(self.generator_step(real.shape[0], real.device))
        self.update_ema()
        for scheduler in self.lr_schedulers() or []:  # manual optimization: Lightning leaves the stepping to us
            scheduler.step()
        first = self.batches == 0
        self.batches += 1
        if self.ada is not None:
            self.ada.adjust(self.batches, self._all_reduce)
            logs["aug_p"] = torch.tensor(self.ada.p)
        # only the batches the logger records (self.log is costly; see compat.logger_records_batch), and the first
        if first or compat.logger_records_batch(self.trainer):
            for k, v in logs.items():
                self.log(f"train/{k}", v, prog_bar=k in ("d_loss", "g_loss"))

    @torch.no_grad()
    def update_ema(self) -> None:
        """generator_ema ← decay·generator_ema + (1 − decay)·generator, with the ramp-up of ``ema_warmup``."""
        decay = min(self.hparams.ema_decay, (1 + self.batches) / (self.hparams.ema_warmup + self.batches))
        torch._foreach_lerp_(list(self.generator_ema.parameters()), list(self.generator.parameters()), 1 - decay)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)
        self._ema_stale = True

    def on_train_end(self) -> None:
        # DDP broadcasts buffers (batch-norm statistics) from rank 0 at the start of every training_step, so after
        # the last batch they still hold each rank's own update; one broadcast makes every rank end identical.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in self.buffers():
                torch.distributed.broadcast(buffer, src=0)
        self._ema_stale = True

    # ------------------------------------------------------------------------------------------------------
    # Validation: D's view of held-out real images

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real, y = batch[0], (batch[1] if self.num_classes else None)
        z = randn_from_seeds(torch.arange(real.shape[0]) + 10_000 * batch_idx, (self.latent_dim,), real.device)
        real_logits, fake_logits = self._critic(y)(real), self._critic(y)(call_generator(self.generator_ema, z, y))
        d_loss = self.loss.discriminator_loss(real_logits.float(), fake_logits.float()).mean()
        values = {"val/d_loss": d_loss, "val/d_real": real_logits.mean(), "val/d_fake": fake_logits.mean()}
        self.log_dict(values, sync_dist=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """A test run only shows held-out images to observers (``GenerativeMetrics`` writes the metric card)."""

    # ------------------------------------------------------------------------------------------------------
    # Sampling

    @torch.no_grad()
    def _refresh_ema(self) -> None:
        """Re-estimate the EMA generator's BN statistics and the mean latent after its weights changed."""
        if not self._ema_stale:
            return
        g = torch.Generator().manual_seed(0)
        if self.hparams.bn_stat_batches > 0:
            batches = range(self.hparams.bn_stat_batches)
            zs = [torch.randn(64, self.latent_dim, generator=g).to(self.device) for _ in batches]
            g_ema, labels = self.generator_ema, torch.arange(64) % max(1, self.num_classes)  # classes in turn
            update_bn(zs, LabelledGenerator(g_ema, labels) if self.num_classes else g_ema)  # no-op without BN
        self._mean_latent = self.latents.centre(self.generator_ema, g, self.hparams.mean_latent_samples, self.device)
        self._ema_stale = False

    def mean_latent(self) -> Tensor:
        """The truncation centre of the EMA generator (``latents.centre``): the mean of fixed z, or ``w_avg``."""
        self._refresh_ema()
        return self._mean_latent

    @torch.no_grad()
    def generate(self, z: Tensor, truncation_psi: float | None = None, labels: Tensor | None = None) -> Tensor:
        """Images in [0, 1] (B, C, H, W) from latents z (B, D) [and ``labels`` (B,)], the EMA generator in eval mode."""
        self._refresh_ema()
        psi = self.hparams.truncation_psi if truncation_psi is None else truncation_psi
        g = self.generator_ema
        was_training = g.training
        g.eval()  # per-sample outputs, and mapping leaves w_avg alone
        x = self.latents.generate(g, z, psi, self._mean_latent, self.hparams.noise_mode, labels)
        g.train(was_training)
        return to_unit(x).clamp(0, 1)

    def forward(self, z: Tensor) -> Tensor:
        """Images in [0, 1] from latents z with the EMA generator (same as ``generate``)."""
        return self.generate(z)

    def sample(self, n: int, seed: int | None = None, truncation_psi: float | None = None, labels=None) -> Tensor:
        """``n`` images (n, C, H, W) in [0, 1]; image i comes from seed ``seed + i``, exactly as ``predict`` gives.

        ``seed=None`` draws a starting seed from torch's global generator; ``truncation_psi=None`` uses the
        module's ``truncation_psi``. ``labels`` (conditional): an int or class name, n ints, None = i mod K."""
        y = resolve_labels(labels, n, self.num_classes, self.hparams.get("class_names"), self.device)
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        seeds = torch.arange(seed, seed + n)
        # Batches of 64 as predict's default, so batch-size-dependent kernels cannot make the two differ.
        z = [randn_from_seeds(s, (self.latent_dim,), self.device) for s in seeds.split(64)]
        ys = [None] * len(z) if y is None else y.split(64)
        out = [self.generate(zi, truncation_psi, yi) for zi, yi in zip(z, ys)]
        return torch.cat(out) if out else torch.empty(0, *self.generator_ema.image_shape)

    def images_to_log(self, n: int) -> dict[str, Tensor]:
        """For ``ImageLogger``: ``samples_ema`` (n images from seeds 0 … n-1) and ``interpolation`` (rows of 8
        spherical interpolations between fixed latents, n // 8 rows), each (B, C, H, W) in [0, 1]."""
        rows = max(1, n // 8)
        z = interpolation_latents(rows, self.latent_dim, steps=8, device=self.device)  # (rows * 8, D)
        if not self.num_classes:
            return {"samples_ema": self.sample(n, seed=0), "interpolation": self.generate(z)}
        k = min(self.num_classes, 16)  # conditional: one row of 8 per class; row r of the interpolation in class r
        y = torch.arange(8 * max(rows, k), device=self.device) // 8 % self.num_classes  # (8 * rows,)
        samples, walk = self.sample(8 * k, 0, None, y[: 8 * k]), self.generate(z, None, y[: len(z)])
        return {"samples_ema": samples, "interpolation": walk}

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any]:
        index, seeds = batch[0], batch[1]  # (index, seed[, label]) from SeedDataModule
        y = (batch[2] if len(batch) > 2 else index % self.num_classes).to(self.device) if self.num_classes else None
        images = self.generate(randn_from_seeds(seeds, (self.latent_dim,), self.device), labels=y)
        return {"images": images, "names": [f"{i:06d}" for i in index.tolist()]}
