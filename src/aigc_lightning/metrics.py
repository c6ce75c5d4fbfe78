"""FID, KID and IS during validation (torchmetrics underneath), with feature extractors that work offline.

``GenerativeMetrics`` is a Lightning callback for any model with ``sample(n, seed=...)`` (GAN, VAE). Every
``every_n_epochs`` validation epochs it

1. feeds the validation batches (x in [-1, 1]) to the metrics as *real* images — once: torchmetrics keeps them
   (``reset_real_features=False``), so later epochs only generate;
2. generates ``num_samples`` images with ``pl_module.sample``, split across ranks (rank r makes a contiguous slice
   of the seeds ``seed … seed + num_samples - 1``, so the set is the same for any number of devices);
3. computes on *every* rank (torchmetrics all-gathers the states; computing on rank 0 alone would hang) and logs
   ``val/fid``, ``val/kid`` (mean over subsets) and ``val/is`` (mean over splits).

Feature extractors (``feature=``):

- ``DomainFeatures`` (default): the penultimate layer of a small classifier trained by this framework
  (``configs/classifier/digits.yaml``); the digits one ships inside the package, so no download. A classifier
  trained on other data (e.g. 28-px MNIST through ``ImageFolderDataModule``) loads with ``checkpoint=...``.
  Numbers are comparable only between runs using the same extractor — they are not Inception FIDs.
- ``InceptionFeatures``: torchmetrics' port of the TF Inception-v3 (needs ``pip install torch-fidelity`` and its
  weights file). With ``antialias=False`` images are resized to 299 px by the TF1-style bilinear resize, as in the
  original TF FID code and torch-fidelity, which is what published FIDs used; see the class docstring.

All three metrics read the same features: the extractor runs once per image, not once per metric.
"""

from __future__ import annotations

import time
import warnings
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from aigc_lightning.datamodules.images import convert_channels
from aigc_lightning.errors import UserError
from aigc_lightning.nets.classifier import ConvClassifier

DIGITS_CLASSIFIER = "digits_classifier.pt"  # in aigc_lightning/assets/, made by configs/classifier/digits.yaml


# ----------------------------------------------------------------------------------------------------------
# Classifier weights: a small file of {"init_args": ..., "state_dict": ...} for ConvClassifier


def export_classifier(checkpoint: str, output: str) -> None:
    """Write a ``Classifier`` Lightning checkpoint's network as the small weights file ``DomainFeatures`` loads.

    Only the network's constructor arguments and ``state_dict`` are kept (no optimizer state), which keeps the
    digits extractor under 200 KB in the package.
    """
    from aigc_lightning.modules.classifier import Classifier

    if not Path(checkpoint).expanduser().is_file():
        raise UserError(f"checkpoint {checkpoint} does not exist; pass a Classifier run's checkpoints/last.ckpt")
    net = Classifier.load_from_checkpoint(checkpoint, map_location="cpu").net
    if not isinstance(net, ConvClassifier):
        raise UserError(f"{checkpoint} holds a {type(net).__name__}; export_classifier handles ConvClassifier")
    init_args = {
        "channels": net.channels,
        "image_size": net.image_size,
        "num_classes": net.num_classes,
        "width": net.body[0][0].out_channels,
        "feature_dim": net.num_features,
    }
    torch.save({"init_args": init_args, "state_dict": net.state_dict()}, output)


def load_classifier(checkpoint: str | None = None) -> ConvClassifier:
    """The classifier in eval mode: the packaged digits one (``None``), an exported ``.pt`` or a ``Classifier``
    Lightning ``.ckpt`` (e.g. ``lightning_logs/version_N/checkpoints/last.ckpt`` of a classifier config)."""
    if checkpoint is None:
        source = resources.files("aigc_lightning") / "assets" / DIGITS_CLASSIFIER
        with resources.as_file(source) as path:
            data = torch.load(path, map_location="cpu", weights_only=True)
    else:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise UserError(
                f"feature extractor checkpoint {path} does not exist; train one with "
                "configs/classifier/digits.yaml (pointed at your data) and pass its last.ckpt"
            )
        data = torch.load(path, map_location="cpu", weights_only=False)
        if "pytorch-lightning_version" in data:  # a Classifier .ckpt: rebuild it through its saved config
            from aigc_lightning.modules.classifier import Classifier

            return Classifier.load_from_checkpoint(path, map_location="cpu").net.eval()
    if not isinstance(data, dict) or "state_dict" not in data:
        raise UserError(f"{checkpoint} is not a classifier weights file; make one with export_classifier")
    net = ConvClassifier(**data["init_args"])
    net.load_state_dict(data["state_dict"])
    return net.eval()


# ----------------------------------------------------------------------------------------------------------
# Feature extractors: images in [0, 1] (N, C, H, W) → (features (N, d), logits (N, k))


class DomainFeatures(nn.Module):
    """Penultimate-layer features and logits of a classifier trained by this framework (frozen, eval mode).

    Images are converted to the classifier's channels (luma / repetition), resized to its training size
    (bilinear, antialiased) and mapped to [-1, 1], the range it was trained on.

    Args:
        checkpoint: ``None`` for the digits classifier shipped in the package (32 px, grey, trained by
            ``configs/classifier/digits.yaml``), or the path of a ``Classifier`` ``.ckpt`` / exported ``.pt``.
    """

    def __init__(self, checkpoint: str | None = None) -> None:
        super().__init__()
        self.net = load_classifier(checkpoint).requires_grad_(False)
        self.num_features, self.num_classes = self.net.num_features, self.net.num_classes

    def train(self, mode: bool = True) -> DomainFeatures:
        return super().train(False)  # BatchNorm must keep its running statistics: always eval

    def forward(self, x01: Tensor) -> tuple[Tensor, Tensor]:
        x = convert_channels(x01.float(), self.net.channels)
        size = self.net.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return self.net.features_and_logits(x * 2 - 1)


class InceptionFeatures(nn.Module):
    """torchmetrics' FID Inception-v3 (torch-fidelity's port of the TF graph): pool3 features (2048) and logits.

    Settings that reproduce published FIDs (TF ``fid.py``, torch-fidelity, StyleGAN papers): 8-bit images (the
    callback quantises), resized to 299×299 by the **TF1 bilinear resize without antialiasing**
    (``antialias=False``), pool3 features, and ~50k generated images against the full training set. torchmetrics'
    own default, ``antialias=True`` (PyTorch's antialiased bilinear), is closer to an ideal resize (clean-fid's
    argument) but shifts FIDs away from the published tables, by a visible amount on 32-px CIFAR-10.
    The ``num_samples`` used during training are far fewer than 50k: those FIDs are biased upwards and are for
    comparing checkpoints, not papers.

    Args:
        weights_path: local copy of ``weights-inception-2015-12-05-6726825d.pth``; ``None`` lets torch-fidelity
            download it into the torch hub cache (fails offline with an explanation).
        antialias: antialiased resize (see above); ``False`` matches published FIDs.
    """

    def __init__(self, weights_path: str | None = None, antialias: bool = False) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            self.net = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=["2048", "logits_unbiased"],
                feature_extractor_weights_path=weights_path,
                antialias=antialias,
            )
        except ModuleNotFoundError as e:
            raise UserError(
                f"Inception features need torch-fidelity ({e}); run `pip install torch-fidelity`, or keep the "
                "offline default feature extractor (aigc_lightning.metrics.DomainFeatures)"
            ) from e
        except (OSError, RuntimeError, ValueError) as e:  # urllib's URLError is an OSError
            raise UserError(
                "the Inception weights could not be loaded or downloaded (offline?): "
                f"{e}. Download weights-inception-2015-12-05-6726825d.pth from torch-fidelity's GitHub releases "
                "and pass it as feature.init_args.weights_path (or put it in ~/.cache/torch/hub/checkpoints), or "
                "use the offline DomainFeatures"
            ) from e
        self.num_features, self.num_classes = 2048, 1008

    def forward(self, x01: Tensor) -> tuple[Tensor, Tensor]:
        x = convert_channels(x01.float(), 3)
        features, logits = self.net((x * 255).round().clamp(0, 255).to(torch.uint8))
        return features.reshape(len(x), -1), logits.reshape(len(x), -1)  # (N, 2048), (N, 1008)


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
        every_n_epochs: compute every N-th epoch (the ``fid_every_n_epochs`` cadence).
        num_samples: generated images per evaluation, over all ranks together.
        feature: feature extractor returning ``(features, logits)`` of images in [0, 1]; ``None`` is the
            packaged digits ``DomainFeatures``. ``InceptionFeatures`` for natural images (downloads weights).
        seed: sample i of every evaluation comes from seed + i (the same latents each time: less noise between
            epochs); also seeds KID's and IS's random subsets.
        batch_size: images per ``sample`` call.
        kid_subsets: number of random subsets KID averages over.
        kid_subset_size: images per KID subset; lowered to the number of real / generated images if larger.
        is_splits: number of splits the Inception Score averages over.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_samples: int = 1000,
        feature: nn.Module | None = None,
        seed: int = 0,
        batch_size: int = 250,
        kid_subsets: int = 20,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
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
        with warnings.catch_warnings():  # KID and IS keep all features: a few MB at these sizes, not worth a warning
            warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
            self.fid = FrechetInceptionDistance(feature=_Precomputed(d), reset_real_features=False)
            self.kid = KernelInceptionDistance(
                feature=_Precomputed(d), subsets=kid_subsets, subset_size=kid_subset_size, reset_real_features=False
            )
            self.inception_score = InceptionScore(feature=_Precomputed(k), splits=is_splits)
        self.num_real = 0  # real images fed on this rank; 0 until the cache is filled
        self.real_done = False
        self.active = False
        self.seconds = 0.0  # wall time spent in this callback (the evaluation cost; bench/fid_cost.py)
        self.evaluations = 0

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

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        due = (trainer.current_epoch + 1) % self.every_n_epochs == 0 or trainer.state.fn == "validate"
        # fast_dev_run is a smoke test of one batch: FID of one batch means nothing (and may hold < 2 images)
        self.active = due and not trainer.sanity_checking and not trainer.fast_dev_run

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not self.active or self.real_done or dataloader_idx != 0:
            return
        start = time.perf_counter()
        x = batch[0] if isinstance(batch, (tuple, list)) else batch  # (B, C, H, W) in [-1, 1]
        self._update((x + 1) / 2, real=True)
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
                self._update(pl_module.sample(n, seed=self.seed + i).to(device), real=False)
            # every rank calls compute(): torchmetrics all-gathers the states there (rank 0 alone would hang)
            count = torch.tensor(float(self.num_real), device=device)
            values = self._compute(int(trainer.strategy.reduce(count, reduce_op="sum").item()))
        for key, value in values.items():
            # identical on every rank (synced states, seeded subsets): sync_dist only silences Lightning's warning
            pl_module.log(key, value, sync_dist=True)
        self.evaluations += 1
        self.seconds += time.perf_counter() - start

    def _update(self, x01: Tensor, real: bool) -> None:
        # 8-bit quantisation, as if the images were saved as PNG: real and generated go through the same step
        x01 = (x01.detach().float().clamp(0, 1) * 255).round() / 255
        with torch.autocast(x01.device.type, enabled=False):  # features in float32 whatever trainer.precision
            features, logits = self.feature(x01)
        self.fid.update(features, real=real)
        self.kid.update(features, real=real)
        if not real:
            self.inception_score.update(logits)

    def _compute(self, num_real: int) -> dict[str, Tensor]:
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
        num_samples=len(fake), feature=feature, seed=seed, kid_subset_size=kid_subset_size, is_splits=is_splits
    )
    metrics.feature.to(real.device)
    with torch.no_grad():
        for images, is_real in ((real, True), (fake, False)):
            for chunk in images.split(batch_size):
                metrics._update(chunk, real=is_real)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            values = metrics._compute(len(real))
    return {key.removeprefix("val/"): float(value) for key, value in values.items()}


__all__ = [
    "DomainFeatures",
    "GenerativeMetrics",
    "InceptionFeatures",
    "evaluate_images",
    "export_classifier",
    "load_classifier",
    "rank_slice",
]
