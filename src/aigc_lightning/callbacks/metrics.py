"""FID, KID and IS during validation (torchmetrics underneath), with feature extractors that work offline.

``GenerativeMetrics`` is a Lightning callback for any model with ``sample(n, seed=...)`` (GAN, VAE). Every
``every_n_epochs`` validation epochs it

1. feeds the validation batches (x in [-1, 1]) to the metrics as *real* images — once: torchmetrics keeps them
   (``reset_real_features=False``), so later epochs only generate;
2. generates ``num_samples`` images with ``pl_module.sample``, split across ranks (rank r makes a contiguous slice
   of the seeds ``seed … seed + num_samples - 1``, so the set is the same for any number of devices);
3. computes on *every* rank (torchmetrics all-gathers the states; computing on rank 0 alone would hang) and logs
   ``val/fid``, ``val/kid`` (mean over subsets) and ``val/is`` (mean over splits), and the best FID so far as
   ``hp_metric`` (TensorBoard's HParams tab).

In ``test`` runs (``python -m aigc_lightning test --config RUN/config.yaml --ckpt_path CKPT``) it scores
``test_num_samples`` samples against the test images with every metric of ``aigc_lightning.evaluation`` —
FID, KID, IS, precision/recall, density/coverage, and PPL for StyleGAN generators — logs them as ``test/…`` and
writes the metric card ``metrics.json`` in the run folder (``callbacks/metric_card.py``).

The feature extractors (``nets.DomainFeatures``, the offline default, and ``nets.InceptionFeatures``) are plain
``nn.Module``s in ``nets/features.py``. All three metrics read the same features: the extractor runs once per image,
not once per metric.
"""

from __future__ import annotations

import time
import warnings
from typing import Literal

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from aigc_lightning.callbacks.metric_card import TestEvaluation
from aigc_lightning.errors import UserError
from aigc_lightning.evaluation.card import Settings
from aigc_lightning.evaluation.extract import extractor_of
from aigc_lightning.nets.features import DomainFeatures
from aigc_lightning.pixels import to_unit


def rank_slice(num_samples: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous part ``[first, last)`` of ``range(num_samples)`` that ``rank`` generates; the slices of all
    ranks partition the range, so every sample index (and seed) is used once whatever the number of devices."""
    return rank * num_samples // world_size, (rank + 1) * num_samples // world_size


class _Precomputed(nn.Module):
    """The torchmetrics metrics' ``feature=`` module when features are computed beforehand: returns its input.

    torchmetrics runs its extractor inside each metric's ``update``; three metrics would run it three times.
    Extracting once and handing each metric its columns through this identity keeps the metrics' own states,
    DDP sync and formulas.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features  # read by FrechetInceptionDistance instead of probing a dummy image

    def forward(self, features: Tensor) -> Tensor:
        return features


# ----------------------------------------------------------------------------------------------------------
# The callback


class GenerativeMetrics(Callback):
    """Logs ``val/fid``, ``val/kid`` and ``val/is`` of ``pl_module.sample`` against the validation images.

    Runs at the end of every ``every_n_epochs``-th validation epoch of ``fit`` (epochs N-1, 2N-1, …, zero-based,
    the same epochs as ``ModelCheckpoint(every_n_epochs=N)``, so a best-FID checkpoint with
    ``monitor: val/fid`` always finds the key) and in every ``validate`` run; skipped in the sanity check.
    The model needs ``sample(n, seed=...)`` returning images in [0, 1] (GANs sample from their EMA generator
    there, if they keep one) and a ``validation_step`` (Lightning runs no validation loop without one).

    Generation and metric computation run under a forked, seeded CPU RNG (and the device's): the metrics are
    the same on every rank, and enabling them does not change the random stream of training.

    Args:
        every_n_epochs: compute at the validations of epochs N-1, 2N-1, … (zero-based).
        num_samples: generated images per evaluation, over all ranks together.
        feature: feature extractor returning ``(features, logits)`` of images in [0, 1]; ``None`` is the
            packaged digits ``DomainFeatures``. ``InceptionFeatures`` for natural images (downloads weights).
        seed: sample i of every evaluation comes from seed + i (the same latents each time: less noise between
            epochs); also seeds KID's and IS's random subsets.
        batch_size: images per ``sample`` call.
        kid_subsets: number of random subsets KID averages over.
        kid_subset_size: images per KID subset; lowered to the number of real / generated images if larger.
        is_splits: number of splits the Inception Score averages over.
        test_num_samples: generated images scored in a ``test`` run (``None``: ``num_samples``); 50000 for papers.
        resize: test runs: ``clean`` (bicubic, antialiased) or ``legacy`` (TF1 bilinear, published Inception FIDs)
            resize to the extractor's input size; see docs/metrics.md.
        bootstrap: test runs: FID bootstrap resamples for its confidence interval (0: none).
        ppl_samples: test runs: latent pairs for the perceptual path length of StyleGAN generators (0: skip).
        card_path: test runs: where to write the metric card; ``None``: ``metrics.json`` in the run's log folder.
    """

    def __init__(
        self,
        every_n_epochs: PositiveInt = 1,
        num_samples: PositiveInt = 1000,
        feature: nn.Module | None = None,
        seed: int = 0,
        batch_size: PositiveInt = 250,
        kid_subsets: PositiveInt = 20,
        kid_subset_size: PositiveInt = 1000,
        is_splits: PositiveInt = 10,
        test_num_samples: PositiveInt | None = None,
        resize: Literal["clean", "legacy"] = "clean",
        bootstrap: NonNegativeInt = 20,
        ppl_samples: NonNegativeInt = 1000,
        card_path: str | None = None,
    ) -> None:
        if every_n_epochs < 1 or num_samples < 2 or batch_size < 1:
            raise UserError(
                f"GenerativeMetrics needs every_n_epochs >= 1, num_samples >= 2 and batch_size >= 1; got "
                f"{every_n_epochs}, {num_samples}, {batch_size}"
            )
        self.every_n_epochs, self.num_samples, self.seed = every_n_epochs, num_samples, seed
        self.batch_size, self.kid_subset_size = batch_size, kid_subset_size
        self.feature = feature if feature is not None else DomainFeatures()
        d, k = self.feature.num_features, self.feature.num_classes
        with (
            warnings.catch_warnings()
        ):  # KID and IS keep all features: a few MB at these sizes, not worth a warning
            warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
            self.fid = FrechetInceptionDistance(feature=_Precomputed(d), reset_real_features=False)
            self.kid = KernelInceptionDistance(
                feature=_Precomputed(d),
                subsets=kid_subsets,
                subset_size=kid_subset_size,
                reset_real_features=False,
            )
            self.inception_score = InceptionScore(feature=_Precomputed(k), splits=is_splits)
        self.num_real = 0  # real images fed on this rank; 0 until the cache is filled
        self.real_done = False
        self.active = False
        self.seconds = 0.0  # wall time spent in this callback (the evaluation cost; python -m bench fid_cost)
        self.evaluations = 0
        self.best_fid = float("inf")  # the run's headline number, logged as hp_metric
        self.test_settings = Settings(seed, bootstrap, kid_subsets, kid_subset_size, is_splits)
        self.test_num_samples, self.resize = test_num_samples or num_samples, resize
        self.ppl_samples, self.card_path = ppl_samples, card_path
        self.test_run: TestEvaluation | None = None  # built in setup("test")

    def state_dict(self) -> dict[str, float]:
        return {"best_fid": self.best_fid}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.best_fid = state_dict.get("best_fid", float("inf"))

    def _metrics(self) -> list:
        return [self.fid, self.kid, self.inception_score]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not callable(getattr(pl_module, "sample", None)):
            raise UserError(
                f"GenerativeMetrics needs a model with sample(n, seed=...); {type(pl_module).__name__} has none. "
                "Remove the callback from trainer.callbacks for this model"
            )
        if stage in ("fit", "validate") and not is_overridden("validation_step", pl_module):
            raise UserError(
                f"GenerativeMetrics computes FID during validation, but {type(pl_module).__name__} has no "
                "validation_step, so Lightning runs no validation; add one (it may just log images)"
            )
        self.feature.to(pl_module.device)
        for metric in self._metrics():
            metric.to(pl_module.device)
        if stage == "test" and self.test_run is None:
            self.test_run = TestEvaluation(
                extractor_of(self.feature), self.resize, self.test_num_samples, self.batch_size,
                self.test_settings, self.ppl_samples, self.card_path,
            )  # fmt: skip

    # ------------------------------------------------------------------------------------------------------
    # test: the metric card

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.test_run.start()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if dataloader_idx == 0:
            self.test_run.add_real(batch)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        start = time.perf_counter()
        values = self.test_run.finish(trainer, pl_module)
        for key, value in values.items():
            pl_module.log(key, value, sync_dist=True)  # the same on every rank (gathered features, seeded)
        self.seconds += time.perf_counter() - start

    # ------------------------------------------------------------------------------------------------------
    # validation: FID/KID/IS through torchmetrics

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        due = (trainer.current_epoch + 1) % self.every_n_epochs == 0 or trainer.state.fn == "validate"
        # fast_dev_run is a smoke test of one batch: FID of one batch means nothing (and may hold < 2 images)
        self.active = due and not trainer.sanity_checking and not trainer.fast_dev_run

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if not self.active or self.real_done or dataloader_idx != 0:
            return
        start = time.perf_counter()
        x = batch[0] if isinstance(batch, (tuple, list)) else batch  # (B, C, H, W) in [-1, 1]
        self.add_images(to_unit(x), real=True)
        self.num_real += len(x)
        self.seconds += time.perf_counter() - start

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.active:
            return
        start = time.perf_counter()
        self.real_done = True
        device = pl_module.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            first, last = rank_slice(self.num_samples, trainer.global_rank, trainer.world_size)
            for i in range(first, last, self.batch_size):
                n = min(self.batch_size, last - i)
                self.add_images(pl_module.sample(n, seed=self.seed + i).to(device), real=False)
            # every rank calls compute(): torchmetrics all-gathers the states there (rank 0 alone would hang)
            count = torch.tensor(float(self.num_real), device=device)
            values = self.compute_metrics(int(trainer.strategy.reduce(count, reduce_op="sum").item()))
        for key, value in values.items():
            # identical on every rank (synced states, seeded subsets): sync_dist only silences Lightning's warning
            pl_module.log(key, value, sync_dist=True)
        if trainer.state.fn == "fit":
            self.best_fid = min(self.best_fid, float(values["val/fid"]))
            pl_module.log(
                "hp_metric", self.best_fid, sync_dist=True
            )  # TensorBoard's HParams tab: best FID so far
        self.evaluations += 1
        self.seconds += time.perf_counter() - start

    def add_images(self, x01: Tensor, real: bool) -> None:
        """Feed images in [0, 1] (N, C, H, W) to the metrics as real or generated, through torchmetrics' ``update``."""
        # 8-bit quantisation, as if the images were saved as PNG: real and generated go through the same step
        x01 = (x01.detach().float().clamp(0, 1) * 255).round() / 255
        with torch.autocast(x01.device.type, enabled=False):  # features in float32 whatever trainer.precision
            features, logits = self.feature(x01)
        self.fid.update(features, real=real)
        self.kid.update(features, real=real)
        if not real:
            self.inception_score.update(logits)

    def compute_metrics(self, num_real: int) -> dict[str, Tensor]:
        """``val/fid``, ``val/kid``, ``val/is`` of what was fed (torchmetrics' ``compute``, collective under DDP);
        then the generated features are reset. ``num_real``: real images fed over all ranks."""
        if num_real < 2:
            raise UserError(
                f"GenerativeMetrics got {num_real} validation image(s); FID needs at least 2. Give the data a "
                "validation split (e.g. --data.val_fraction 0.1) or raise limit_val_batches"
            )
        self.kid.subset_size = min(self.kid_subset_size, num_real, self.num_samples)
        values = {
            "val/fid": self.fid.compute(),
            "val/kid": self.kid.compute()[0],
            "val/is": self.inception_score.compute()[0],
        }
        for metric in self._metrics():
            metric.reset()  # generated features only: reset_real_features=False keeps the real ones
        return values


def evaluate_images(
    real: Tensor,
    fake: Tensor,
    feature: nn.Module | None = None,
    batch_size: int = 250,
    seed: int = 0,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
) -> dict[str, float]:
    """FID, KID (mean) and IS of two image sets in [0, 1], (N, C, H, W), exactly as ``GenerativeMetrics`` computes
    them (same extractor, quantisation and seeded subsets); for benchmarks and for scoring a folder of samples.

    Returns ``{"fid": ..., "kid": ..., "is": ...}``.
    """
    metrics = GenerativeMetrics(
        num_samples=len(fake),
        feature=feature,
        seed=seed,
        kid_subset_size=kid_subset_size,
        is_splits=is_splits,
    )
    metrics.feature.to(real.device)
    with torch.no_grad():
        for images, is_real in ((real, True), (fake, False)):
            for chunk in images.split(batch_size):
                metrics.add_images(chunk, real=is_real)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            values = metrics.compute_metrics(len(real))
    return {key.removeprefix("val/"): float(value) for key, value in values.items()}


__all__ = ["GenerativeMetrics", "evaluate_images", "rank_slice"]
