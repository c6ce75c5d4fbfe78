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
