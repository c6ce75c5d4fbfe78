"""Feature extractors for FID / KID / IS: images in [0, 1] (N, C, H, W) → ``(features (N, d), logits (N, k))``.

- ``DomainFeatures`` (the offline default): the penultimate layer of a small classifier trained by this framework
  (``configs/classifier/digits.yaml``); the digits one ships inside the package, so no download. A classifier
  trained on other data loads with ``checkpoint=...``. Numbers are comparable only between runs using the same
  extractor — they are not Inception FIDs.
- ``InceptionFeatures``: torch-fidelity's port of the TF Inception-v3 (needs ``pip install torch-fidelity`` and its
  weights file).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn

from aigc_lightning.errors import UserError
from aigc_lightning.nets.classifier import ConvClassifier
from aigc_lightning.pixels import convert_channels, resize_crop, to_signed
from aigc_lightning.torch_files import load_tensors

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's FID Inception file
DIGITS_CLASSIFIER = (
    "digits_classifier.pt"  # in aigc_lightning/assets/, made by configs/classifier/digits.yaml
)


# ----------------------------------------------------------------------------------------------------------
# Classifier weights: a small file of {"init_args": ..., "state_dict": ...} for ConvClassifier


def classifier_from_lightning_checkpoint(data: dict, path: Path) -> ConvClassifier:
    """The ``net`` of a ``Classifier`` Lightning checkpoint (already loaded), rebuilt without Lightning: from its
    saved config (``{"class_path", "init_args"}``: a run of the classifier config)."""
    config = data.get("hyper_parameters", {}).get("net")
    if not isinstance(config, dict) or "init_args" not in config:
        raise UserError(
            f"{path} is not a Classifier checkpoint of a configured run (no 'net' config); pass the last.ckpt of "
            "a configs/classifier run, or a .pt written by export_classifier"
        )
    net = ConvClassifier(**dict(config["init_args"]))
    net.load_state_dict({k[len("net.") :]: v for k, v in data["state_dict"].items() if k.startswith("net.")})
    return net.eval()


def load_classifier(checkpoint: str | None = None) -> ConvClassifier:
    """The classifier in eval mode: the packaged digits one (``None``), an exported ``.pt`` or a ``Classifier``
    Lightning ``.ckpt`` (e.g. ``lightning_logs/version_N/checkpoints/last.ckpt`` of a classifier config)."""
    if checkpoint is None:
        source = resources.files("aigc_lightning") / "assets" / DIGITS_CLASSIFIER
        with resources.as_file(source) as path:
            data = torch.load(path, map_location="cpu", weights_only=True)
    else:
        path = Path(checkpoint).expanduser()
        expected = (
            "a Classifier run's last.ckpt (train one with configs/classifier/digits.yaml) or an exported .pt"
        )
        data = load_tensors(path, "feature extractor checkpoint", expected)
        if isinstance(data, dict) and "pytorch-lightning_version" in data:
            return classifier_from_lightning_checkpoint(data, path)
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
        self.checkpoint = checkpoint  # named in metric cards
        self.num_features, self.num_classes = self.net.num_features, self.net.num_classes

    def train(self, mode: bool = True) -> DomainFeatures:
        return super().train(False)  # BatchNorm must keep its running statistics: always eval

    def forward(self, x01: Tensor) -> tuple[Tensor, Tensor]:
        x = convert_channels(x01.float(), self.net.channels)
        size = self.net.image_size
        if x.shape[-2:] != (size, size):
            x = resize_crop(x, size)
        return self.net.features_and_logits(to_signed(x))


@contextmanager
def _tensors_only_copy(weights_path: str | None) -> Iterator[str | None]:
    """A copy of a user's weights file that holds tensors only: torch-fidelity loads the file it is given with
    ``torch.load(weights_only=False)``, which would run any code a pickle carries. The user's file is read with
    ``weights_only=True`` and its tensors written to a temporary file for torch-fidelity."""
    if weights_path is None:
        yield None
        return
    state = load_tensors(weights_path, "Inception weights file", f"a local copy of {INCEPTION_WEIGHTS}")
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / INCEPTION_WEIGHTS)
        torch.save(state, path)
        yield path


class InceptionFeatures(nn.Module):
    """torch-fidelity's FID Inception-v3 (its port of the TF graph, which torchmetrics wraps too): pool3 features
    (2048) and logits (1008), from torch-fidelity's own class, so features equal torch-fidelity's bit for bit.

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
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

            with _tensors_only_copy(weights_path) as safe_path:
                self.net = FeatureExtractorInceptionV3(
                    "inception-v3-compat",
                    ["2048", "logits_unbiased"],
                    feature_extractor_weights_path=safe_path,
                )
        except ModuleNotFoundError as e:
            raise UserError(
                f"Inception features need torch-fidelity ({e}); run `pip install torch-fidelity`, or keep the "
                "offline default feature extractor (aigc_lightning.nets.DomainFeatures)"
            ) from e
        except (OSError, RuntimeError, ValueError) as e:  # urllib's URLError is an OSError
            raise UserError(
                "the Inception weights could not be loaded or downloaded (offline?): "
                f"{e}. Download weights-inception-2015-12-05-6726825d.pth from torch-fidelity's GitHub releases "
                "and pass it as feature.init_args.weights_path (or put it in ~/.cache/torch/hub/checkpoints), or "
                "use the offline DomainFeatures"
            ) from e
        self.num_features, self.num_classes = 2048, 1008
        self.weights_path = weights_path  # named in metric cards
        self.antialias = antialias

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # batch norm keeps its statistics: always eval

    def forward(self, x01: Tensor) -> tuple[Tensor, Tensor]:
        x = convert_channels(x01.float(), 3) * 255
        if self.antialias and x.shape[-2:] != (
            299,
            299,
        ):  # the net's own resize is TF1 bilinear (no antialias)
            x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", antialias=True)
        features, logits = self.net(
            x.round().clamp(0, 255).to(torch.uint8)
        )  # torch-fidelity takes 8-bit input
        return features.reshape(len(x), -1), logits.reshape(len(x), -1)  # (N, 2048), (N, 1008)


__all__ = ["DIGITS_CLASSIFIER", "DomainFeatures", "InceptionFeatures", "load_classifier"]
