"""Video generation as a GAN over clips: MoCoGAN (Tulyakov et al. 2018) trained by ``GAN``'s own machinery.

``VideoGAN`` is ``GAN`` with a clip generator and a clip critic (``nets.mocogan``): training, the alternation, the
losses, R1, the EMA generator, DDP, precision and exact resume are ``GAN``'s, unchanged. The generator's latent
``z`` is its content code followed by every frame's motion noise, so ``GAN``'s seeded latents and batch-norm
statistics apply as they are. This class adds only what is particular to clips:

- sampling with content and motion from separate seeds: ``sample_video(n, frames, seed=S, motion_seed=M)`` gives
  clip i the content of seed S+i and the motion of seed M+i (M = S by default: clip i is then the generator's
  image of the latent of seed S+i); a clip may be longer than the training clips (the GRU runs on);
- ``predict`` writes one MP4 per clip (``OUT/000000.mp4`` …) and ``grid.mp4``;
- ``images_to_log``: frame strips (rows of 8 frames of one clip) for the ``ImageLogger``.

Truncation (``truncation_psi``) pulls the content code toward the mean, never the motion noise.
"""

from __future__ import annotations

from typing import Any

import torch
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveInt
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from aigc_lightning.constraints import UnitIntervalBelowOne
from aigc_lightning.errors import UserError
from aigc_lightning.gan_losses import AdversarialLoss, WassersteinGP
from aigc_lightning.gan_regularizers import R1
from aigc_lightning.modules.gan import GAN
from aigc_lightning.pixels import to_unit
from aigc_lightning.seeds import randn_from_seeds

STRIP = 8  # frames per logged strip row (the ImageLogger's grids have 8 images per row)


class VideoGAN(GAN):
    """A GAN over clips (B, C, T, H, W): MoCoGAN's content/motion generator against image and video critics.

    Args:
        generator: a clip generator with ``clip(content, noise)``, ``split(z)``, ``content_dim``, ``noise_dim`` and
            ``frames`` (``aigc_lightning.nets.mocogan.VideoGenerator``).
        discriminator: clip → logits (B, k) (``aigc_lightning.nets.mocogan.MoCoGANDiscriminator``: the video
            critic's and the image critic's); the loss is averaged over the k columns.
        optimizer_g: optimizer factory for the generator (MoCoGAN: Adam, lr 2e-4, betas (0.5, 0.999)).
        optimizer_d: optimizer factory for both critics.
        lr_scheduler: as ``GAN``'s.
        loss: ``aigc_lightning.gan_losses.NonSaturating`` (``null``, the paper's) or ``Hinge``.
        n_critic: critic steps per batch before one generator step.
        r1: lazy R1 penalty on real clips (``aigc_lightning.gan_regularizers.R1``); ``null`` for none.
        ema_decay: decay of the generator's exponential moving average (sampling, predict), in [0, 1).
        ema_warmup: EMA ramp-up, as ``GAN``'s.
        truncation_psi: pulls the content code toward its mean (1: none); motion is never truncated.
        mean_latent_samples: latents the truncation centre is estimated from.
        bn_stat_batches: batches of 64 fixed latents that re-estimate the EMA generator's batch-norm statistics.
        sample_frames: frames of sampled and predicted clips; ``null``: the generator's training length (the GRU runs
            on, so clips may be longer than the training clips).
        fps: frame rate of the written MP4s.
        motion_seed: predict's clip i takes its motion from seed ``motion_seed + i`` (its content from ``--seed``
            + i); ``null``: from the same seed as its content.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_g: OptimizerCallable = torch.optim.Adam,
        optimizer_d: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        loss: AdversarialLoss | None = None,
        n_critic: PositiveInt = 1,
        r1: R1 | None = None,
        ema_decay: UnitIntervalBelowOne = 0.999,
        ema_warmup: PositiveInt = 10,
        truncation_psi: NonNegativeFloat = 1.0,
        mean_latent_samples: PositiveInt = 4096,
        bn_stat_batches: NonNegativeInt = 16,
        sample_frames: PositiveInt | None = None,
        fps: PositiveInt = 8,
        motion_seed: int | None = None,
    ) -> None:
        missing = [
            a for a in ("clip", "split", "content_dim", "noise_dim", "frames") if not hasattr(generator, a)
        ]
        if missing:
            raise UserError(
                f"VideoGAN needs a clip generator (aigc_lightning.nets.mocogan.VideoGenerator); "
                f"{type(generator).__name__} has no {', '.join(missing)}: set model.generator to a VideoGenerator"
            )
        if isinstance(loss, WassersteinGP):  # its penalty interpolates images (B, C, H, W), not clips
            raise UserError(
                "VideoGAN supports model.loss NonSaturating or Hinge, not WassersteinGP; change it"
            )
        if (sample_frames is not None and sample_frames < 1) or fps < 1:
            raise UserError(f"model.sample_frames and model.fps must be >= 1, got {sample_frames}, {fps}")
        super().__init__(
            generator,
            discriminator,
            optimizer_g=optimizer_g,
            optimizer_d=optimizer_d,
            lr_scheduler=lr_scheduler,
            loss=loss,
            n_critic=n_critic,
            r1=r1,
            ema_decay=ema_decay,
            ema_warmup=ema_warmup,
            truncation_psi=truncation_psi,
            mean_latent_samples=mean_latent_samples,
            bn_stat_batches=bn_stat_batches,
        )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real = batch[0]
        expected = self.generator.clip_shape if hasattr(self.generator, "clip_shape") else None
        if real.ndim != 5 or (expected is not None and tuple(real.shape[1:]) != tuple(expected)):
            raise UserError(
                f"VideoGAN got a batch of shape {tuple(real.shape)} but its generator makes clips {expected} "
                "(C, T, H, W); use a clip DataModule (MovingDigitsDataModule, VideoFolderDataModule) whose "
                "frames equal model.generator's frames"
            )
        super().training_step(batch, batch_idx)

    # ------------------------------------------------------------------------------------------------------
    # Sampling

    @torch.no_grad()
    def generate_clips(
        self,
        seeds: Tensor,
        motion_seeds: Tensor | None = None,
        frames: int | None = None,
        truncation_psi=None,
    ) -> Tensor:
        """Clips (B, C, T, H, W) in [0, 1] with the EMA generator: clip i's content code from ``seeds[i]`` and its
        motion noise from ``motion_seeds[i]`` (default: ``seeds``), ``frames`` long (default: ``model.sample_frames``,
        else the generator's training length)."""
        self._refresh_ema()
        g = self.generator_ema
        t = frames or self.hparams.sample_frames or g.frames
        motion_seeds = seeds if motion_seeds is None else motion_seeds
        # The seed's latent laid out as the generator's z (content, then T noise vectors): at the training
        # length, the same z as GAN.sample draws; longer clips extend the noise of the same seed.
        width = g.content_dim + t * g.noise_dim
        content = randn_from_seeds(seeds, (width,), self.device)[:, : g.content_dim]
        noise = randn_from_seeds(motion_seeds, (width,), self.device)[:, g.content_dim :]
        noise = noise.unflatten(1, (t, g.noise_dim))  # (B, T, noise_dim)
        psi = self.hparams.truncation_psi if truncation_psi is None else truncation_psi
        if psi != 1:
            content = torch.lerp(self._mean_latent[: g.content_dim], content, psi)
        was_training = g.training
        g.eval()
        x = g.clip(content, noise)
        g.train(was_training)
        return to_unit(x).clamp(0, 1)

    def sample_video(
        self,
        n: int,
        frames: int | None = None,
        seed: int | None = None,
        motion_seed: int | None = None,
        truncation_psi: float | None = None,
    ) -> Tensor:
        """``n`` clips (n, C, T, H, W) in [0, 1]: clip i has the content of seed ``seed + i`` and the motion of seed
        ``motion_seed + i`` (``None``: ``seed + i``), exactly as ``predict`` gives them; ``seed=None`` draws a
        starting seed from torch's global generator."""
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        seeds = torch.arange(seed, seed + n)
        motion = seeds if motion_seed is None else torch.arange(motion_seed, motion_seed + n)
        out = [
            self.generate_clips(s, m, frames, truncation_psi)
            for s, m in zip(seeds.split(64), motion.split(64))
        ]
        t = frames or self.hparams.sample_frames or self.generator_ema.frames
        return torch.cat(out) if out else torch.empty(0, self.generator_ema.image_shape[0], t)

    def sample(self, n: int, seed: int | None = None, truncation_psi: float | None = None) -> Tensor:
        """``n`` clips (n, C, T, H, W) in [0, 1] (``sample_video`` at the configured length)."""
        return self.sample_video(n, seed=seed, truncation_psi=truncation_psi)

    def images_to_log(self, n: int) -> dict[str, Tensor]:
        """For ``ImageLogger``, rows of 8 frames spread over a clip, n // 8 clips each (B, C, H, W) in [0, 1]:
        ``clips_ema`` (content and motion from seeds 0 … n/8-1) and ``motion_ema`` (the content of seed 0 under
        the motion of each seed: the same digit should move differently in every row)."""
        rows = max(1, n // STRIP)
        seeds = torch.arange(rows)
        clips = self.generate_clips(seeds)
        same_content = self.generate_clips(torch.zeros_like(seeds), seeds)
        return {"clips_ema": frame_strips(clips), "motion_ema": frame_strips(same_content)}

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any]:
        index, seeds = batch[0], batch[1]  # (index, seed[, label]) from SeedDataModule
        m = self.hparams.motion_seed
        clips = self.generate_clips(seeds, None if m is None else index + m)
        return {"clips": clips, "fps": self.hparams.fps, "names": [f"{i:06d}" for i in index.tolist()]}


def frame_strips(clips: Tensor, per_row: int = STRIP) -> Tensor:
    """``per_row`` frames spread evenly over each clip (B, C, T, H, W) as images (B · per_row, C, H, W), clip by
    clip: a grid of ``per_row`` images per row shows one clip per row (frames repeat when T < per_row)."""
    t = clips.shape[2]
    pick = torch.linspace(0, t - 1, per_row).round().long().to(clips.device)
    return clips[:, :, pick].transpose(1, 2).flatten(0, 1)  # (B, per_row, C, H, W) → (B · per_row, C, H, W)


__all__ = ["VideoGAN", "frame_strips"]
