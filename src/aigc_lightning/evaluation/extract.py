"""Images → features for evaluation: the extractor a user names, the resize mode, folders read in batches.

Every image takes one path, whatever its source (a folder of PNGs, a checkpoint's samples, a DataModule's test
batches): 8-bit pixels in [0, 1] → the extractor's channels → resized to the extractor's input size by the chosen
mode → the extractor's ``(features, logits)``.

Resize modes (the choice moves FIDs by whole points: NVlabs stylegan2-ada-pytorch #283, clean-fid):

- ``clean`` (default): bicubic with antialiasing (torchvision's, which follows PIL's filter; clean-fid's choice),
  the resize a photo editor does. The Inception net takes 8-bit input: the resized image is rounded to 8 bits.
- ``legacy``: TensorFlow 1's bilinear resize without antialiasing, as in the original TF ``fid.py``,
  torch-fidelity and the StyleGAN papers' tables: use it to compare with published numbers. With Inception the
  network resizes the 8-bit image itself exactly as torch-fidelity does.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from aigc_lightning.datamodules.io import IMAGE_EXTENSIONS, load_image, pil_to_uint8
from aigc_lightning.errors import UserError
from aigc_lightning.nets.features import (
    DIGITS_CLASSIFIER,
    INCEPTION_WEIGHTS,
    DomainFeatures,
    InceptionFeatures,
)
from aigc_lightning.pixels import convert_channels

ResizeMode = Literal["clean", "legacy"]
RESIZE_FILTERS = {
    "clean": "bicubic, antialiased (PIL-style; clean-fid)",
    "legacy": "bilinear, TensorFlow 1 without antialiasing (TF fid.py, torch-fidelity, StyleGAN papers)",
}
INCEPTION_FILE = INCEPTION_WEIGHTS
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Extractor:
    """A feature extractor and what a card needs to name it: ``net(x01)`` → ``(features (N, d), logits (N, k))``
    for images (N, ``channels``, ``input_size``, ``input_size``) in [0, 1]."""

    net: nn.Module
    name: str
    weights: str
    weights_sha256: str
    input_size: int
    channels: int
    resizes_legacy_itself: bool = (
        False  # Inception's own TF1 resize of the 8-bit image (torch-fidelity's path)
    )

    @property
    def num_features(self) -> int:
        return self.net.num_features

    def describe(self) -> dict:
        return {
            "name": self.name,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "num_features": self.num_features,
            "input_size": self.input_size,
        }


def load_extractor(spec: str = "digits", inception_weights: str | None = None) -> Extractor:
    """``digits`` (the packaged classifier), ``inception`` (the FID Inception-v3; ``inception_weights`` names the
    local weights file, else torch's hub cache) or the path of a classifier checkpoint trained by this framework."""
    if spec == "digits":
        source = resources.files("aigc_lightning") / "assets" / DIGITS_CLASSIFIER
        with resources.as_file(source) as path:
            digest = sha256_file(path)
        net = DomainFeatures()
        return Extractor(net, "digits", f"aigc_lightning/assets/{DIGITS_CLASSIFIER}", digest, net.net.image_size,
                         net.net.channels)  # fmt: skip
    if spec == "inception":
        path = Path(inception_weights).expanduser() if inception_weights else (
            Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE)  # fmt: skip
        if not path.is_file():
            raise UserError(
                f"Inception weights {path} not found; download {INCEPTION_URL} and pass it with "
                "--inception_weights FILE (or put it in the torch hub cache, ~/.cache/torch/hub/checkpoints)"
            )
        net = InceptionFeatures(weights_path=str(path), antialias=False)
        return Extractor(net, "inception-v3-compat (FID)", str(path), sha256_file(path), 299, 3,
                         resizes_legacy_itself=True)  # fmt: skip
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(
            f"--features {spec} is neither digits, inception nor an existing classifier checkpoint file"
        )
    net = DomainFeatures(checkpoint=str(path))
    return Extractor(net, str(path), str(path), sha256_file(path), net.net.image_size, net.net.channels)


def extractor_of(net: nn.Module) -> Extractor:
    """The ``Extractor`` of a feature module a config built (``GenerativeMetrics(feature=...)``)."""
    if isinstance(net, InceptionFeatures):
        extractor = load_extractor("inception", net.weights_path)
        extractor.net = net
        return extractor
    if isinstance(net, DomainFeatures):
        extractor = load_extractor(net.checkpoint or "digits")
        extractor.net = net
        return extractor
    size = getattr(net, "input_size", None)
    if size is None:
        raise UserError(
            f"{type(net).__name__} as a feature extractor needs an input_size attribute (and channels) for the metric "
            "card; or use DomainFeatures / InceptionFeatures"
        )
    return Extractor(net, type(net).__name__, "", "", int(size), int(getattr(net, "channels", 3)))


# ----------------------------------------------------------------------------------------------------------
# Resizing


def tf1_bilinear(x: Tensor, size: int) -> Tensor:
    """TensorFlow 1's ``resize_bilinear`` (align_corners=False, no half-pixel centres, no antialiasing):
    output pixel i samples input position ``i * in / out``."""
    out = x
    for dim in (-2, -1):
        n = out.shape[dim]
        pos = torch.arange(size, device=x.device, dtype=torch.float64) * (n / size)
        lo = pos.floor().long().clamp(max=n - 1)
        hi = (lo + 1).clamp(max=n - 1)
        w = (pos - lo).to(x.dtype)
        shape = [1] * out.ndim
        shape[dim] = size
        w = w.view(shape)
        out = out.index_select(dim, lo) * (1 - w) + out.index_select(dim, hi) * w
    return out


def resize(x01: Tensor, size: int, mode: ResizeMode) -> Tensor:
    """Float images (N, C, H, W) in [0, 1] → (N, C, size, size) by ``mode`` (non-square: stretched)."""
    if x01.shape[-2:] == (size, size):
        return x01
    if mode == "clean":
        return TF.resize(x01, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True).clamp(
            0, 1
        )
    return tf1_bilinear(x01, size)


def quantize(x01: Tensor) -> Tensor:
    """8-bit rounding, as if the images were saved as PNG: real and generated images take the same step."""
    return (x01.detach().float().clamp(0, 1) * 255).round() / 255


@torch.no_grad()
def features_of(x01: Tensor, extractor: Extractor, mode: ResizeMode) -> tuple[Tensor, Tensor]:
    """Features and logits (float32, on x01's device) of images in [0, 1], already quantised when they should be."""
    x = convert_channels(x01.float(), extractor.channels)
    if not (mode == "legacy" and extractor.resizes_legacy_itself):
        x = resize(x, extractor.input_size, mode)
    with torch.autocast(x.device.type, enabled=False):
        features, logits = extractor.net(x)
    return features.float(), logits.float()


# ----------------------------------------------------------------------------------------------------------
# Folders


@dataclass
class ImageFolder:
    """The images of a folder (sorted, sub-folders included), read lazily; ``sha256`` hashes names and bytes."""

    root: Path
    files: list[Path]

    @classmethod
    def open(cls, root: str | Path, option: str, limit: int | None = None) -> ImageFolder:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise UserError(f"{option} {path} is not a folder; pass a folder of images")
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise UserError(
                f"no images in {option} {path} (looked for {', '.join(IMAGE_EXTENSIONS)}, also in sub-folders)"
            )
        if limit is not None:
            if len(files) < limit:
                raise UserError(
                    f"{option} {path} holds {len(files)} images, fewer than --num_samples {limit}"
                )
            files = files[:limit]
        return cls(path, files)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for f in self.files:
            digest.update(str(f.relative_to(self.root)).encode() + b"\0")
            digest.update(hashlib.sha256(f.read_bytes()).digest())
        return digest.hexdigest()

    def batches(self, batch_size: int, channels: int) -> Iterator[Tensor]:
        """Float images (B, C, H, W) in [0, 1]; every image must have the first image's size."""
        size = None
        for i in range(0, len(self.files), batch_size):
            images = []
            for f in self.files[i : i + batch_size]:
                x = pil_to_uint8(load_image(f, channels))
                size = size or tuple(x.shape[-2:])
                if tuple(x.shape[-2:]) != size:
                    raise UserError(
                        f"{f} is {x.shape[-1]}x{x.shape[-2]} but {self.files[0]} is {size[1]}x{size[0]}; every image "
                        "of a set must have one size (resize the folder first)"
                    )
                images.append(x)
            yield torch.stack(images).float() / 255


def extract(
    batches: Iterable[Tensor],
    extractor: Extractor,
    mode: ResizeMode,
    device: torch.device,
    total: int,
    desc: str,
) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """Features (N, d) and logits (N, k), float32 on ``device``, of images in [0, 1] from ``batches`` (quantised to
    8 bits here), with a progress bar on a terminal; also the images' (H, W)."""
    feats, logits, size = [], [], None
    with tqdm(total=total, desc=desc, unit="img", disable=None, file=sys.stderr) as bar:
        for x in batches:
            f, lg = features_of(quantize(x.to(device)), extractor, mode)
            feats.append(f)
            logits.append(lg)
            size = size or tuple(x.shape[-2:])
            bar.update(len(x))
    return torch.cat(feats), torch.cat(logits), size


__all__ = [
    "RESIZE_FILTERS",
    "Extractor",
    "ImageFolder",
    "ResizeMode",
    "extract",
    "extractor_of",
    "features_of",
    "load_extractor",
    "quantize",
    "resize",
    "sha256_file",
    "tf1_bilinear",
]
