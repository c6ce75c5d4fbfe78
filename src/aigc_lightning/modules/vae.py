"""VAE: maximise the ELBO (Kingma & Welling 2014); report the importance-weighted NLL (Burda et al. 2016).

Data arrives in [-1, 1]; ``targets`` maps it to [0, 1] (with ``pixels.to_unit``), because a Bernoulli likelihood needs
targets in [0, 1] and the encoder's contract (``encode(x)``) is x in [0, 1]. A conditional VAE (Sohn et al. 2015;
networks with ``num_classes > 0``) passes the batch's labels y to q(z|x, y) and p(x|z, y): every bound below is
then conditional on the class, and ``sample(n, seed, labels)`` draws z ~ N(0, I) for the requested classes.

Metrics, all in nats per image (lower is better) unless named otherwise:
- ``train/loss``: the objective (β, KL warm-up and free bits applied); ``*/nelbo`` = −ELBO with β = 1,
  ``*/recon`` = E_q[−log p(x|z)], ``*/kl`` = KL(q(z|x) ‖ N(0, I)), ``*/bpd`` = −ELBO in bits per dimension.
- ``val/nll_iw``, ``test/nll_iw``: −(importance-weighted bound) with ``val_importance_samples`` /
  ``test_importance_samples`` samples: the NLL papers report (86.76 nats for a one-layer VAE with k = 5000 on
  dynamically binarised MNIST, IWAE Table 1). ``val/active_units``: latents whose posterior mean varies over
  the validation set (Cov_x E_q[z_j] > 0.01, Burda et al.): posterior collapse shows as this dropping.

``val/nll_iw`` (``val/nelbo`` when ``val_importance_samples`` is 0) is also logged as ``hp_metric``, the run's
number in TensorBoard's HParams tab. Image grids (reconstructions of fixed validation images, prior samples, latent
interpolations) are drawn by the ``ImageLogger`` callback from ``images_to_log``.

Gaussian likelihoods are densities over [0, 1] pixels; their ``bpd`` adds log 256 per dimension (the usual
8-bit discretisation) and is only comparable with other models evaluated the same way.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from aigc_lightning import compat
from aigc_lightning.errors import UserError, check_finite
from aigc_lightning.labels import network_classes, resolve_labels
from aigc_lightning.losses import (
    bernoulli_nll,
    gaussian_nll,
    importance_weighted_bound,
    iwae_loss,
    kl_normal,
    log_normal_diag,
)
from aigc_lightning.modules.hparams import PlainHyperparameters
from aigc_lightning.modules.pretrained import PretrainedMixin
from aigc_lightning.modules.vae_metrics import VAEMetrics
from aigc_lightning.modules.vae_parts import output_bias_from_data, vae_optimizers
from aigc_lightning.pixels import to_unit
from aigc_lightning.seeds import randn_from_seeds

# exp(±) of these stays finite in fp32 and bf16; an encoder that drifts beyond would give inf/NaN KL.
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


TRAIN_SCALARS = ("train/loss", "train/nelbo", "train/recon", "train/kl")  # per image, in nats


class VAE(PlainHyperparameters, PretrainedMixin, LightningModule):
    """Variational autoencoder with a Bernoulli or Gaussian likelihood, β / KL warm-up / free bits, IW-NLL metric.

    Args:
        encoder: image in [0, 1] (B, C, H, W) → (mu, logvar), each (B, latent_dim); needs ``latent_dim``.
        decoder: z (B, latent_dim) → likelihood parameter per pixel (B, C, H, W); needs ``latent_dim``.
        likelihood: ``bernoulli`` (decoder gives logits; for binary or binarised data) or ``gaussian`` (decoder
            gives the mean of N(mean, σ²) over [0, 1] pixels; for RGB).
        gaussian_std: σ of the Gaussian likelihood (its initial value when ``learn_std``).
        learn_std: learn one shared log σ with the networks (σ-VAE, Rybkin et al. 2021) instead of fixing it.
        beta: weight of the KL term in the training objective (β-VAE); metrics always use β = 1.
        warmup_batches: KL warm-up: β rises linearly from 0 to ``beta`` over this many training batches.
        free_bits: floor (nats) on each latent's KL in the training objective; 0 disables it.
        train_importance_samples: samples k of the training objective: 1 trains on the ELBO (analytic KL); k > 1
            on the importance-weighted bound (IWAE, Burda et al. 2016), per image, at k decoder passes per image;
            β / warm-up then weight log p(z) − log q(z|x). Not combinable with ``free_bits``.
        val_importance_samples: samples k of the importance-weighted NLL at validation (0 disables it).
        test_importance_samples: samples k of the importance-weighted NLL at test (papers use 5000).
        iw_batch_images: images decoded per pass when estimating the IW bound (bounds memory).
        output_bias_from_data: before the first batch of a fresh run, set the decoder's output bias to the
            likelihood parameter of the mean training image (logit of the mean for a Bernoulli, the mean for a
            Gaussian), from up to 16 training batches drawn without touching the run's random numbers; the decoder
            needs an ``init_output_bias(value)`` method (``MLPDecoder``, ``ConvDecoder``). The untrained decoder
            otherwise starts at p = 0.5 for every pixel (~540 nats for an MNIST digit) and spends its first
            updates learning the background (docs/results.md: ~1–2 nats at 20 epochs).
        optimizer: optimizer factory for all parameters.
        encoder_lr_scale: the encoder's learning rate is the optimizer's times this (its own parameter group). At
            the high learning rates that train the MLP VAE fastest, a slower encoder keeps q(z|x) a good proposal
            for the importance-weighted bound on held-out images (docs/results.md).
        lr_scheduler: optional learning-rate scheduler factory (``aigc_lightning.schedules.WarmupCosine``, any
            torch scheduler).
        lr_scheduler_interval: step the scheduler once per ``epoch`` or once per training ``step`` (batch). A
            scheduler whose ``total_steps`` is left unset (``WarmupCosine``, ``OneCycleLR``) gets the run's number
            of steps, ``trainer.estimated_stepping_batches``, so warm-up and decay follow ``max_epochs``.
        conditional: train on the data's labels (a conditional VAE): the CLI sets both networks' ``num_classes`` and
            ``class_names`` from the data (docs/conditional.md).
        class_names: the name of each class (the CLI fills it from the data), for ``predict --class_label NAME``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        gaussian_std: PositiveFloat = 0.1,
        learn_std: bool = True,
        beta: NonNegativeFloat = 1.0,
        warmup_batches: NonNegativeInt = 0,
        free_bits: NonNegativeFloat = 0.0,
        train_importance_samples: PositiveInt = 1,
        val_importance_samples: NonNegativeInt = 16,
        test_importance_samples: NonNegativeInt = 1000,
        iw_batch_images: PositiveInt = 8192,
        output_bias_from_data: bool = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        encoder_lr_scale: PositiveFloat = 1.0,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        conditional: bool = False,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if likelihood not in ("bernoulli", "gaussian"):
            raise UserError(f"model.likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        if train_importance_samples < 1:
            raise UserError(f"model.train_importance_samples must be >= 1, got {train_importance_samples}")
        if train_importance_samples > 1 and free_bits > 0:
            raise UserError(
                "model.free_bits works on the ELBO's analytic KL, which the importance-weighted objective "
                f"(train_importance_samples={train_importance_samples}) does not have: set one of them to its default"
            )
        latent_dims = {getattr(encoder, "latent_dim", None), getattr(decoder, "latent_dim", None)}
        if len(latent_dims) != 1 or None in latent_dims:
            raise UserError(
                f"encoder and decoder need the same `latent_dim` attribute, got {sorted(map(str, latent_dims))}; "
                "set the same latent_dim in model.init_args.encoder and model.init_args.decoder"
            )
        self.encoder, self.decoder = encoder, decoder
        self.num_classes = network_classes(encoder, decoder, conditional)  # 0: unconditional
        # Kept as attributes: under LightningCLI ``hparams`` hold their *config* (a dict), not the callables.
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.latent_dim = encoder.latent_dim
        log_std = torch.tensor(math.log(gaussian_std))
        if likelihood == "gaussian" and learn_std:
            self.log_std = nn.Parameter(log_std)
        else:
            self.register_buffer("log_std", log_std)
        self.batches = 0  # training batches done: drives the KL warm-up; in checkpoint["counters"]
        self._epoch_sum, self._epoch_count = torch.zeros(len(TRAIN_SCALARS)), 0  # training epoch means
        self.metrics = VAEMetrics(self.latent_dim)  # validation / test numbers (vae_metrics.py)

    # ------------------------------------------------------------------------------------------------------
    # Public API (contract): encode, decode, sample

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z|x[, y]) for images x in [0, 1] (B, C, H, W): ``(mu, logvar)``, each (B, latent_dim), float32."""
        mu, logvar = self.encoder(x) if y is None else self.encoder(x, y)
        return mu.float(), logvar.float().clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The likelihood's parameters for z (B, latent_dim): logits (Bernoulli) or means (Gaussian), (B, C, H, W)."""
        return self.decoder(z) if y is None else self.decoder(z, y)

    def mean_image(self, params: Tensor) -> Tensor:
        """E[x | z] in [0, 1] from the decoder's output: sigmoid(logits), or the Gaussian mean clamped."""
        if self.hparams.likelihood == "bernoulli":
            return torch.sigmoid(params.float())
        return params.float().clamp(0, 1)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, labels=None) -> Tensor:
        """n images (n, C, H, W) in [0, 1] decoded from z ~ N(0, I), sample i from seed + i; a conditional VAE's
        ``labels``: an int or class name, n ints, or ``None`` = image i of class i mod ``num_classes``.

        Returns the mean E[x | z] (for a Bernoulli the pixel probabilities), not a binary draw: the smooth mean is
        what one looks at, and it is exactly what ``predict`` writes for the same seeds.
        """
        y = resolve_labels(labels, n, self.num_classes, self.hparams.get("class_names"), self.device)
        z = randn_from_seeds(torch.arange(seed, seed + n), (self.latent_dim,), self.device)
        return self.mean_image(self.decode(z, y))

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """E[x | z = E_q[z|x]] in [0, 1] for images x in [0, 1] (and their labels y, conditional)."""
        return self.mean_image(self.decode(self.encode(x, y)[0], y))

    # ------------------------------------------------------------------------------------------------------
    # ELBO pieces

    @staticmethod
    def targets(x: Tensor) -> Tensor:
        """DataModule pixels in [-1, 1] → [0, 1]: the one conversion (binarised data becomes exactly 0 / 1)."""
        return to_unit(x)

    def nll(self, params: Tensor, x01: Tensor) -> Tensor:
        """−log p(x | z) summed over pixels, (B,)."""
        if self.hparams.likelihood == "bernoulli":
            return bernoulli_nll(params, x01)
        return gaussian_nll(params, x01, self.log_std)

    def elbo_terms(self, x01: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One-sample reparameterised estimate: ``(recon, kl, mu, logvar)``, recon and kl (B,) in nats."""
        mu, logvar = self.encode(x01, y)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparameterisation trick
        return self.nll(self.decode(z, y), x01), kl_normal(mu, logvar), mu, logvar

    def current_beta(self) -> float:
        """β of the next training batch: linear warm-up 0 → ``beta`` over ``warmup_batches`` batches."""
        beta, warmup = self.hparams.beta, self.hparams.warmup_batches
        return beta * min(1.0, self.batches / warmup) if warmup > 0 else beta

    @torch.no_grad()
    def log_likelihood_iw(self, x01: Tensor, k: int, y: Tensor | None = None) -> Tensor:
        """Importance-weighted lower bound on log p(x[|y]) with k samples of q(z|x[, y]), (B,) (Burda et al. 2016)."""
        mu, logvar = self.encode(x01, y)
        chunk = max(1, self.hparams.iw_batch_images // x01.shape[0])
        log_w = []
        for start in range(0, k, chunk):
            log_px_z, log_pz, log_qz = self.log_weight_terms(x01, mu, logvar, min(chunk, k - start), y)
            log_w.append(log_px_z + log_pz - log_qz)
        return importance_weighted_bound(torch.cat(log_w))  # (k, B) → (B,)

    def log_weight_terms(
        self, x01: Tensor, mu: Tensor, logvar: Tensor, k: int, y: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """k reparameterised z ~ q(z|x) per image: ``(log p(x|z), log p(z), log q(z|x))``, each (k, B)."""
        b = x01.shape[0]
        z = mu + torch.exp(0.5 * logvar) * torch.randn(k, *mu.shape, device=mu.device)  # (k, B, D)
        params = self.decode(z.flatten(0, 1), None if y is None else y.repeat(k))  # (k*B, C, H, W)
        x_rep = x01.expand(k, *x01.shape).flatten(0, 1)  # (k*B, C, H, W)
        log_px_z = -self.nll(params, x_rep).view(k, b)  # (k, B)
        return log_px_z, log_normal_diag(z), log_normal_diag(z, mu, logvar)

    def training_objective(self, x01: Tensor, beta: float, y: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Per-image training loss (β, free bits or IWAE applied), reconstruction and KL: ``(loss, recon, kl)``, (B,).

        ``recon`` is a one-sample estimate and ``kl`` the analytic KL in both cases, so the logged ELBO means the
        same whichever objective trains.
        """
        k = self.hparams.train_importance_samples
        if k == 1:
            recon, kl, mu, logvar = self.elbo_terms(x01, y)
            kl_objective = kl_normal(mu, logvar, self.hparams.free_bits) if self.hparams.free_bits > 0 else kl
            return recon + beta * kl_objective, recon, kl
        mu, logvar = self.encode(x01, y)
        log_px_z, log_pz, log_qz = self.log_weight_terms(x01, mu, logvar, k, y)
        return iwae_loss(log_px_z, log_pz, log_qz, beta), -log_px_z[0], kl_normal(mu, logvar)

    def bits_per_dim(self, nats: Tensor) -> Tensor:
        """Nats per image → bits per dimension (Gaussian: plus log 256 per dimension, 8-bit discretisation)."""
        dims = math.prod(self.decoder.image_shape) if hasattr(self.decoder, "image_shape") else None
        if dims is None:
            return torch.full_like(nats, float("nan"))
        offset = math.log(256) * dims if self.hparams.likelihood == "gaussian" else 0.0
        return (nats + offset) / (dims * math.log(2))

    # ------------------------------------------------------------------------------------------------------
    # Lightning hooks

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x01, y = self.targets(batch[0]), (batch[1] if self.num_classes else None)
        beta = self.current_beta()
        losses, recon, kl = self.training_objective(x01, beta, y)
        loss = losses.mean()
        check_finite(loss, "train/loss", self.batches)
        self.batches += 1
        n = x01.shape[0]
        values = torch.stack([loss.detach(), (recon + kl).detach().mean(), recon.detach().mean(), kl.detach().mean()])
        # Epoch means from a running sum, and per-batch values only on the first batch and the batches the logger
        # records, as in GAN.training_step: six self.log calls on every batch make the MLP VAE's fit ~1.3x slower
        # (compat.logger_records_batch says why; python -m bench vae_ablation measures it).
        self._epoch_sum = self._epoch_sum + values * n
        self._epoch_count += n
        if self.batches == 1 or compat.logger_records_batch(self.trainer):
            logs = dict(zip(TRAIN_SCALARS, values))
            logs["train/bpd"] = self.bits_per_dim(values[1])
            logs["train/beta"] = torch.tensor(float(beta))
            if self.hparams.likelihood == "gaussian":
                logs["train/sigma"] = self.log_std.detach().exp()
            self.log_dict(logs)
        return loss

    def on_fit_start(self) -> None:
        if self.hparams.output_bias_from_data and self.batches == 0:  # not when resuming
            self.init_output_bias_from_data()

    def init_output_bias_from_data(self, max_batches: int = 16) -> None:
        """``output_bias_from_data``: the decoder's bias from the mean of up to ``max_batches`` training batches."""
        output_bias_from_data(self, max_batches)

    def on_train_epoch_start(self) -> None:
        self._epoch_sum, self._epoch_count = torch.zeros(len(TRAIN_SCALARS), device=self.device), 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_count:
            means = self._epoch_sum / self._epoch_count
            logs = {f"{name}_epoch": value for name, value in zip(TRAIN_SCALARS, means)}
            logs["train/bpd_epoch"] = self.bits_per_dim(means[1])
            self.log_dict(logs, sync_dist=True)

    def _eval_step(self, stage: str, batch: tuple[Tensor, Tensor], k: int) -> None:
        x01, y = self.targets(batch[0]), (batch[1] if self.num_classes else None)
        recon, kl, mu, _ = self.elbo_terms(x01, y)
        self.metrics.update(stage, recon, kl, mu, -self.log_likelihood_iw(x01, k, y) if k > 0 else None)

    def _eval_epoch_end(self, stage: str) -> None:
        logs = self.metrics.compute(stage)
        logs[f"{stage}/bpd"] = self.bits_per_dim(logs[f"{stage}/nelbo"])
        if f"{stage}/nll_iw" in logs:
            logs[f"{stage}/bpd_iw"] = self.bits_per_dim(logs[f"{stage}/nll_iw"])
        if stage == "val":
            logs["hp_metric"] = logs.get("val/nll_iw", logs["val/nelbo"])  # the HParams tab's number
        # Already reduced over processes by torchmetrics' compute(): no sync_dist here.
        self.log_dict(logs)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch, self.hparams.val_importance_samples)

    def on_validation_epoch_start(self) -> None:
        self.metrics.reset("val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch, self.hparams.test_importance_samples)

    def on_test_epoch_start(self) -> None:
        self.metrics.reset("test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict:
        index, seeds = batch[0], batch[1]  # (index, seed[, label]) from SeedDataModule
        y = (batch[2] if len(batch) > 2 else index % self.num_classes).to(self.device) if self.num_classes else None
        z = randn_from_seeds(seeds, (self.latent_dim,), self.device)
        return {"images": self.mean_image(self.decode(z, y)), "names": [f"{i:06d}" for i in index.tolist()]}

    @torch.no_grad()
    def images_to_log(self, n: int, batch: Tensor | None = None, steps: int = 8) -> dict[str, Tensor]:
        """For ``ImageLogger``: ``prior_samples`` (n images from seeds 0 … n-1) and, given a fixed ``batch`` of
        data images in [-1, 1], ``reconstructions`` (rows of 8 inputs, each followed by the row of their
        reconstructions) and ``interpolations`` (rows of ``steps`` decoded points between consecutive posterior
        means). Everything (B, C, H, W) in [0, 1]."""
        if self.num_classes:  # rows of 8 prior samples per class; the traversal: column j is z_j in every class
            k = min(self.num_classes, 16)
            z = randn_from_seeds(torch.arange(8), (self.latent_dim,), self.device).repeat(k, 1)  # (8k, D)
            y = torch.arange(k, device=self.device).repeat_interleave(8)  # (8k,): row c is class c
            traversal = self.mean_image(self.decode(z, y))
            return {"prior_samples": self.sample(8 * k, 0, torch.arange(8 * k) // 8), "class_traversal": traversal}
        images = {"prior_samples": self.sample(n, seed=0)}
        if batch is None:
            return images
        x = self.targets(batch[:n])
        pairs = torch.stack([x, self.reconstruct(x)])  # (2, B, C, H, W)
        rows = [pairs[:, i : i + 8].flatten(0, 1) for i in range(0, len(x), 8)]  # inputs row, then their recons
        images["reconstructions"] = torch.cat(rows)
        if len(x) >= 2:
            mu = self.encode(x)[0]
            count = min(max(1, n // steps), len(x) - 1)
            t = torch.linspace(0, 1, steps, device=mu.device).view(1, steps, 1)  # (1, T, 1)
            z = mu[:count, None] * (1 - t) + mu[1 : count + 1, None] * t  # (P, T, D)
            images["interpolations"] = self.mean_image(self.decode(z.flatten(0, 1)))  # (P*T, C, H, W)
        return images

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["counters"] = {"batches": self.batches}
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.batches = checkpoint.get("counters", {}).get("batches", 0)

    def configure_optimizers(self):
        return vae_optimizers(self)  # vae_parts.py


__all__ = ["VAE"]
