"""GAN training with manual, alternating optimizer steps: ``n_critic`` discriminator steps, then one generator step.

Schedules (lazy R1, EMA ramp-up) run on this module's own **batch** counter: ``trainer.global_step``
counts optimizer steps, i.e. ``n_critic + 1`` per batch, so ``--trainer.max_steps N`` stops after
``N / (n_critic + 1)`` batches. Logged scalars use Lightning's batch x-axis too, every ``log_every_n_steps`` batches.

Multi-GPU: Lightning's ``ddp`` wraps the whole LightningModule in one ``DistributedDataParallel``. A D step never
reaches G's parameters (and the G step leaves D's frozen), which that wrapper treats as an error unless
``find_unused_parameters=True``, so ``setup`` switches it on for the plain ``ddp`` strategy (``compat.py``; Lightning
issues #20328, #20866). ``bench/overhead.py --ddp`` measures what this costs.

StyleGAN2 (docs/stylegan2.md): style mixing, lazy path length, ADA's p, truncation around ``w_avg``. Regularisers
join the loss of the step they fall on (NVlabs takes an extra step), so each loss uses every parameter of its
network and DDP never sees an unused one; p, the path-length mean and ``w_avg`` are saved for exact resume.

Image grids (samples from fixed seeds, a latent interpolation) are drawn by the ``ImageLogger`` callback from
``images_to_log``; FID/KID/IS by the ``GenerativeMetrics`` callback from ``sample``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
from jsonargparse.typing import ClosedUnitInterval as Unit
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

from aigc_lightning import compat, losses
from aigc_lightning.augment import AdaController, augment_with_probability, parse_policy
from aigc_lightning.constraints import UnitIntervalBelowOne
from aigc_lightning.errors import UserError, check_finite, checked_optimizer
from aigc_lightning.lazy import apply_lazy_correction
from aigc_lightning.lr_decay import linear_decay_factor, run_batches, set_lr_factor
from aigc_lightning.modules.hparams import PlainHyperparameters
from aigc_lightning.nets.stylegan2 import mix_styles, networks_from_rosinality
from aigc_lightning.pixels import to_unit
from aigc_lightning.seeds import interpolation_latents, randn_from_seeds

D_LOSSES = {"nonsaturating": losses.d_nonsaturating, "hinge": losses.d_hinge, "wgan-gp": losses.d_wasserstein}
G_LOSSES = {"nonsaturating": losses.g_nonsaturating, "hinge": losses.g_hinge, "wgan-gp": losses.g_wasserstein}


class GAN(PlainHyperparameters, LightningModule):
    """Generative adversarial network with an EMA generator, R1 / WGAN-GP penalties, DiffAugment and truncation.

    Args:
        generator: maps z (B, ``generator.latent_dim``) to images (B, C, H, W) in [-1, 1]. A generator with
            ``mapping``, ``synthesis`` and ``w_avg`` (StyleGAN2) gets truncation in w space around ``w_avg``.
        discriminator: maps images to one logit per image, shape (B,).
        optimizer_g: optimizer factory for the generator (DCGAN: Adam, lr 2e-4, betas (0.5, 0.999)).
        optimizer_d: optimizer factory for the discriminator.
        lr_decay: the last fraction of the run's batches over which both learning rates fall linearly toward 0
            (BigGAN / StyleGAN-style annealing; ``lr_decay.py``); 0 keeps them constant. The run's length is read
            off the Trainer (``max_steps`` / (n_critic + 1) or ``max_epochs``, whichever ends first).
        loss: ``nonsaturating`` (the original GAN, in logits form), ``hinge`` or ``wgan-gp`` (Wasserstein critic
            plus gradient penalty; use a discriminator without batch norm).
        n_critic: discriminator steps per batch (each with fresh z, on the same real batch) before one G step.
        gp_weight: weight λ of the WGAN-GP gradient penalty (only with ``loss: wgan-gp``).
        r1_gamma: weight γ of the R1 penalty γ/2·‖∇D(x)‖² on real images; 0 disables it.
        r1_every: lazy regularisation (StyleGAN2): R1 on every k-th D step only, scaled by k.
        augment: DiffAugment policy applied to real and fake images before D, e.g. ``color,translation,cutout``;
            empty or ``null`` for none. Helps small datasets.
        ema_decay: decay of the generator's exponential moving average (used for sampling and metrics), in
            [0, 1); 0 makes the EMA generator a copy of the trained one.
        ema_warmup: EMA ramp-up: the decay at batch t is ``min(ema_decay, (1 + t) / (ema_warmup + t))`` so early,
            random weights are forgotten quickly.
        truncation_psi: the truncation trick: latents are pulled toward the mean latent,
            ``mean + psi * (z - mean)``, psi >= 0; 1 disables it, the seed's setting is 0.7. Used by ``sample``
            and predict.
        mean_latent_samples: number of latents the mean latent is estimated from (once, with a fixed seed).
        bn_stat_batches: batches of 64 fixed latents that re-estimate the EMA generator's batch-norm statistics
            before sampling (BigGAN's "standing statistics"); averaged weights need statistics of their own.
        noise_mode: StyleGAN2 noise for sampling and predict: ``const`` (stored noise: an image depends on its seed
            alone), ``random`` (from torch's global generator) or ``none``.
        style_mixing_prob: StyleGAN2: probability that a training sample takes a second latent's ws from a random
            layer on (StyleGAN §3.1; NVlabs 0.9).
        pl_weight: weight of StyleGAN2's path-length penalty (eq. 4; NVlabs 2); 0 disables it.
        pl_every: lazy path length: every k-th batch only, scaled by k (NVlabs 4).
        pl_decay: decay of the running mean of path lengths (NVlabs 0.01).
        pl_batch_shrink: the path-length pass uses batch_size // this many samples, at least 1 (NVlabs 2).
        lazy_reg_correction: lr × c and Adam betas ** c, c = k / (k + 1), for each lazy regulariser that is on
            (k = ``r1_every`` for D, ``pl_every`` for G), as StyleGAN2.
        ada_target: ADA: apply ``augment`` to each image with probability p, moved so that E[sign(D(real))]
            approaches this target (paper: 0.6); ``null`` applies ``augment`` always.
        ada_kimg: thousands of real images in which p can go from 0 to 1 (NVlabs 500).
        ada_interval: batches between adjustments of p (NVlabs 4).
        ada_p: the initial p (NVlabs' ``--p``).
        generator_checkpoint: a rosinality/stylegan2-pytorch ``.pt`` whose ``g_ema`` + ``latent_avg`` (and ``d`` if
            present) replace the configured networks, architecture read off the file (pretrained predict, fine-tune).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_g: OptimizerCallable = torch.optim.Adam,
        optimizer_d: OptimizerCallable = torch.optim.Adam,
        lr_decay: Unit = 0.0,
        loss: Literal["nonsaturating", "hinge", "wgan-gp"] = "nonsaturating",
        n_critic: PositiveInt = 1,
        gp_weight: NonNegativeFloat = 10.0,
        r1_gamma: NonNegativeFloat = 0.0,
        r1_every: PositiveInt = 16,
        augment: str | None = None,
        ema_decay: UnitIntervalBelowOne = 0.999,
        ema_warmup: PositiveInt = 10,
        truncation_psi: NonNegativeFloat = 1.0,
        mean_latent_samples: PositiveInt = 4096,
        bn_stat_batches: NonNegativeInt = 16,
        noise_mode: Literal["random", "const", "none"] = "const",
        style_mixing_prob: Unit = 0.0,
        pl_weight: NonNegativeFloat = 0.0,
        pl_every: PositiveInt = 4,
        pl_decay: Unit = 0.01,
        pl_batch_shrink: PositiveInt = 2,
        lazy_reg_correction: bool = False,
        ada_target: Unit | None = None,
        ada_kimg: PositiveFloat = 500.0,
        ada_interval: PositiveInt = 4,
        ada_p: Unit = 0.0,
        generator_checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        if loss not in D_LOSSES:
            raise UserError(f"unknown GAN loss {loss!r}; use one of {', '.join(D_LOSSES)}")
        if n_critic < 1 or r1_every < 1 or ema_warmup < 1:
            raise UserError(f"n_critic, r1_every and ema_warmup must be >= 1, got {n_critic}, {r1_every}, {ema_warmup}")
        if not 0 <= ema_decay < 1:
            raise UserError(f"ema_decay must be in [0, 1), got {ema_decay}")
        # Networks stay in the hyperparameters: under LightningCLI they are their class_path configs, which is
        # what lets ``GAN.load_from_checkpoint(path)`` rebuild the model without arguments.
        self.save_hyperparameters()
        self.automatic_optimization = False
        if generator_checkpoint is not None:
            # the file's architecture wins over the configured one; a grey config (channels 1) gets grey nets
            generator, file_d = networks_from_rosinality(generator_checkpoint, getattr(generator, "channels", None))
            discriminator = file_d or discriminator
        self.generator, self.discriminator = generator, discriminator
        # StyleGAN2-like: truncation in w around w_avg, style mixing and path length need these three
        self.styled = all(hasattr(generator, a) for a in ("mapping", "synthesis", "w_avg"))
        if (style_mixing_prob > 0 or pl_weight > 0) and not self.styled:
            raise UserError("style_mixing_prob and pl_weight need a StyleGAN2Generator; set them to 0 for this one")
        # The EMA generator is a frozen submodule, so it is in every checkpoint's state_dict. Lightning's
        # WeightAveraging callback averages the whole LightningModule (G and D) and swaps it in only during
        # validation, while sampling and metrics need an averaged G alone, at any time: hence this small piece.
        self.generator_ema = copy.deepcopy(generator).requires_grad_(False)
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        self.augment = parse_policy(augment)  # the parsed policy; hparams keep the string
        if ada_target is not None and not self.augment:
            raise UserError("ada_target adapts the probability of the augment policy; set --model.augment too")
        self.ada = None if ada_target is None else AdaController(ada_target, ada_kimg, ada_interval, ada_p)
        self.latent_dim: int = generator.latent_dim
        # Counters, in checkpoint["counters"] for exact resume
        self.batches = 0  # training batches done (the x-axis of every schedule)
        self.d_steps = 0  # discriminator steps done (lazy R1 schedule)
        self.pl_mean = 0.0  # running mean of path lengths (a Python float: identical on every rank, exact on resume)
        self._ema_stale = True  # EMA weights changed since its BN statistics / mean latent were computed
        self._mean_latent: Tensor | None = None
        self._run_batches = 0  # the run's length in batches, read off the Trainer at the start of fit (lr_decay)

    # ------------------------------------------------------------------------------------------------------
    # Lightning hooks

    def setup(self, stage: str) -> None:
        if stage == "fit":  # runs before the strategy wraps the model
            compat.find_unused_parameters(self.trainer.strategy)
        if stage == "fit" and self.trainer.world_size > 1:
            # seed_everything gives every rank the same seed, hence the same z and augmentations: the ranks would
            # all show D the same fakes. A per-rank offset keeps runs reproducible and the fakes distinct.
            torch.manual_seed(torch.initial_seed() + 1_000_003 * self.trainer.global_rank)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opt_g = checked_optimizer(self.optimizer_g, self.generator.parameters(), "model.optimizer_g")
        opt_d = checked_optimizer(self.optimizer_d, self.discriminator.parameters(), "model.optimizer_d")
        if self.hparams.lazy_reg_correction:  # built fresh each fit; a resumed run then loads the saved groups
            if self.hparams.pl_weight > 0:
                apply_lazy_correction(opt_g, self.hparams.pl_every)
            if self.hparams.r1_gamma > 0:
                apply_lazy_correction(opt_d, self.hparams.r1_every)
        return [opt_g, opt_d]

    def on_train_start(self) -> None:
        if self.hparams.lr_decay > 0:
            self._run_batches = run_batches(self.trainer, self.hparams.n_critic + 1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ada = {} if self.ada is None else self.ada.state_dict()  # p and its running sums
        checkpoint["counters"] = {"batches": self.batches, "d_steps": self.d_steps, "pl_mean": self.pl_mean, **ada}
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        counters = checkpoint.get("counters", checkpoint.get("gan_counters", {}))  # gan_counters: before 0.2
        self.batches, self.d_steps = counters.get("batches", 0), counters.get("d_steps", 0)
        self.pl_mean = counters.get("pl_mean", 0.0)
        if self.ada is not None:
            self.ada.load_state_dict(counters)
        self._ema_stale = True

    # ------------------------------------------------------------------------------------------------------
    # Training

    def _augment(self, x: Tensor) -> Tensor:  # DiffAugment on every image, or with ADA's probability p
        return augment_with_probability(x, self.augment, 1.0 if self.ada is None else self.ada.p)

    def _d(self, x: Tensor) -> Tensor:
        return self.discriminator(self._augment(x))

    def _fake(self, n: int, device: torch.device) -> tuple[Tensor, Tensor | None]:
        """``n`` training fakes from the generator and, for a StyleGAN2 generator, the ws they came from (style
        mixing applied per sample with probability ``style_mixing_prob``); ws is None for other generators."""
        z = torch.randn(n, self.latent_dim, device=device)
        g = self.generator
        if not self.styled:
            return g(z), None
        ws = g.mapping(z)  # (n, num_ws, w_dim); in training mode this updates w_avg
        if self.hparams.style_mixing_prob > 0:
            ws2 = g.mapping(torch.randn_like(z), update_w_avg=False)  # w_avg follows the first latent only
            cut = torch.randint(1, g.num_ws, (n,), device=device)
            mixed = torch.rand(n, device=device) < self.hparams.style_mixing_prob
            ws = mix_styles(ws, ws2, torch.where(mixed, cut, torch.full_like(cut, g.num_ws)))
        return g.synthesis(ws), ws

    def _all_reduce(self, x: Tensor, op: str = "sum") -> Tensor:  # over DDP ranks; the identity on one device
        return self.trainer.strategy.reduce(x.to(self.device), reduce_op=op).cpu()

    def discriminator_step(self, real: Tensor) -> dict[str, Tensor]:
        """One D update on ``real`` and fresh fakes; returns the (detached) values to log."""
        opt_d = self.optimizers()[1]
        with self.toggled_optimizer(opt_d):
            fake = self._fake(real.shape[0], real.device)[0].detach()
            real_logits, fake_logits = self._d(real), self._d(fake)
            if self.ada is not None:
                self.ada.accumulate(real_logits)
            loss = D_LOSSES[self.hparams.loss](real_logits.float(), fake_logits.float()).mean()
            logs = {"d_real": real_logits.detach().float().mean(), "d_fake": fake_logits.detach().float().mean()}
            if self.hparams.loss == "wgan-gp":
                gp = losses.gradient_penalty(self.discriminator, real, fake).mean()
                loss = loss + self.hparams.gp_weight * gp
                logs["gp"] = gp.detach()
            if self.hparams.r1_gamma > 0 and self.d_steps % self.hparams.r1_every == 0:
                # Lazy R1 on the images D actually sees (augmented when DiffAugment is on), scaled by the interval.
                r1 = losses.r1_penalty(self.discriminator, self._augment(real)).mean()
                loss = loss + self.hparams.r1_gamma / 2 * r1 * self.hparams.r1_every
                logs["r1"] = r1.detach()
            check_finite(loss, "train/d_loss", self.batches)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt_d.step()
        self.d_steps += 1
        logs["d_loss"] = loss.detach()
        return logs

    def generator_step(self, batch_size: int, device: torch.device) -> dict[str, Tensor]:
        """One G update (plus the lazy path-length term on every ``pl_every``-th batch); returns values to log."""
        opt_g = self.optimizers()[0]
        with self.toggled_optimizer(opt_g):
            loss = G_LOSSES[self.hparams.loss](self._d(self._fake(batch_size, device)[0]).float()).mean()
            logs = {}
            if self.hparams.pl_weight > 0 and self.batches % self.hparams.pl_every == 0:
                pl = self.path_length_term(max(1, batch_size // self.hparams.pl_batch_shrink), device)
                loss = loss + self.hparams.pl_weight * self.hparams.pl_every * pl
                logs = {"pl_penalty": pl.detach(), "pl_mean": torch.tensor(self.pl_mean)}
            check_finite(loss, "train/g_loss", self.batches)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt_g.step()
        return {"g_loss": loss.detach(), **logs}

    def path_length_term(self, n: int, device: torch.device) -> Tensor:
        """Mean path-length penalty of ``n`` fresh fakes (StyleGAN2 eq. 4) after updating the running mean with the
        lengths' mean over all DDP ranks (identical everywhere); a NaN mean leaves it as is and stops the run."""
        images, ws = self._fake(n, device)
        lengths = losses.path_lengths(images, ws)  # (n,)
        batch_mean = float(self._all_reduce(lengths.detach().mean().double(), "mean"))
        if math.isfinite(batch_mean):
            self.pl_mean += self.hparams.pl_decay * (batch_mean - self.pl_mean)  # lerp toward the batch (NVlabs)
        return losses.path_length_penalty(lengths, self.pl_mean).mean()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real = batch[0]
        if self.hparams.lr_decay > 0:
            factor = linear_decay_factor(self.batches, self._run_batches, self.hparams.lr_decay)
            for opt in self.optimizers():
                set_lr_factor(opt, factor)
        for _ in range(self.hparams.n_critic):
            logs = self.discriminator_step(real)
        logs.update(self.generator_step(real.shape[0], real.device))
        self.update_ema()
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
        real = batch[0]
        z = randn_from_seeds(torch.arange(real.shape[0]) + 10_000 * batch_idx, (self.latent_dim,), real.device)
        real_logits = self.discriminator(real)
        fake_logits = self.discriminator(self.generator_ema(z))
        d_loss = D_LOSSES[self.hparams.loss](real_logits.float(), fake_logits.float()).mean()
        values = {"val/d_loss": d_loss, "val/d_real": real_logits.mean(), "val/d_fake": fake_logits.mean()}
        self.log_dict(values, sync_dist=True)

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
            update_bn(zs, self.generator_ema)  # no-op for a generator without batch norm
        if self.styled:  # StyleGAN2: truncation centres on the tracked w_avg, as NVlabs
            self._mean_latent = self.generator_ema.w_avg.clone()
        else:
            z = torch.randn(self.hparams.mean_latent_samples, self.latent_dim, generator=g).to(self.device)
            self._mean_latent = z.mean(0)  # (D,)
        self._ema_stale = False

    def mean_latent(self) -> Tensor:
        """The truncation centre (D,): the EMA generator's ``w_avg`` (StyleGAN2), else the mean of fixed z."""
        self._refresh_ema()
        return self._mean_latent

    @torch.no_grad()
    def generate(self, z: Tensor, truncation_psi: float | None = None) -> Tensor:
        """Images in [0, 1], (B, C, H, W), from latents ``z`` (B, D) with the EMA generator in eval mode."""
        self._refresh_ema()
        psi = self.hparams.truncation_psi if truncation_psi is None else truncation_psi
        g = self.generator_ema
        was_training = g.training
        g.eval()  # per-sample outputs, and mapping leaves w_avg alone
        if self.styled:
            ws = g.mapping(z, truncation_psi=psi, update_w_avg=False)  # (B, num_ws, w_dim), around w_avg
            x = g.synthesis(ws, noise_mode=self.hparams.noise_mode)
        else:
            x = g(torch.lerp(self._mean_latent, z, psi) if psi != 1 else z)
        g.train(was_training)
        return to_unit(x).clamp(0, 1)

    def forward(self, z: Tensor) -> Tensor:
        """Images in [0, 1] from latents z with the EMA generator (same as ``generate``)."""
        return self.generate(z)

    def sample(self, n: int, seed: int | None = None, truncation_psi: float | None = None) -> Tensor:
        """``n`` images (n, C, H, W) in [0, 1]; image i comes from seed ``seed + i``, exactly as ``predict`` gives.

        ``seed=None`` draws a starting seed from torch's global generator; ``truncation_psi=None`` uses the
        module's ``truncation_psi``.
        """
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        seeds = torch.arange(seed, seed + n)
        # Batches of 64 as predict's default, so batch-size-dependent kernels cannot make the two differ.
        z = [randn_from_seeds(s, (self.latent_dim,), self.device) for s in seeds.split(64)]
        out = [self.generate(zi, truncation_psi) for zi in z]
        return torch.cat(out) if out else torch.empty(0, *self.generator_ema.image_shape)

    def images_to_log(self, n: int) -> dict[str, Tensor]:
        """For ``ImageLogger``: ``samples_ema`` (n images from seeds 0 … n-1) and ``interpolation`` (rows of 8
        spherical interpolations between fixed latents, n // 8 rows), each (B, C, H, W) in [0, 1]."""
        z = interpolation_latents(max(1, n // 8), self.latent_dim, steps=8, device=self.device)  # (rows * 8, D)
        return {"samples_ema": self.sample(n, seed=0), "interpolation": self.generate(z)}

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any]:
        index, seeds = batch
        images = self.generate(randn_from_seeds(seeds, (self.latent_dim,), self.device))
        return {"images": images, "names": [f"{i:06d}" for i in index.tolist()]}
