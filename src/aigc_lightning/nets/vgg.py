"""A frozen VGG19 or VGG16 feature extractor for neural style transfer (Gatys et al. 2016; Johnson et al. 2016).

Layers are named as in the paper: ``conv{block}_{i}`` is a convolution's output *before* its ReLU (what the
PyTorch tutorial and most PyTorch ports use), ``relu{block}_{i}`` the rectified one, ``pool{block}`` the pooling.

Weights:
- ``"imagenet"``: torchvision's ``VGG19_Weights.IMAGENET1K_V1`` (``VGG16_Weights.IMAGENET1K_V1`` for
  ``arch: vgg16``) through torchvision's cache (``torch.hub.get_dir()/checkpoints``; downloaded once when online).
- a path to a local ``.pth``: a torchvision VGG19 / VGG16 state dict (``features.N.weight`` keys) or of its ``features``
  alone (``N.weight``).
- ``"none"``: random filters (seeded Kaiming init). Random, untrained VGGs still transfer texture and style when
  pooling is averaged and each layer's loss is normalised by its target's magnitude (He, Wang & Hopcroft 2016,
  "A powerful generative model using random weights for the deep image representation"; Ustyuzhaninov et al.
  2016, "Texture synthesis using shallow convolutional networks with random filters").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal
from urllib.error import URLError

import torch
from torch import Tensor, nn

from aigc_lightning.errors import UserError
from aigc_lightning.torch_files import load_tensors

log = logging.getLogger(__name__)
_warned: list[bool] = []

# torchvision's VGG19 ("E") feature configuration: channels per conv, "M" for a pooling layer.
VGG19_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                    512, 512, 512, 512, "M", 512, 512, 512, 512, "M")  # fmt: skip
# VGG16 ("D"), the network of Johnson, Alahi & Fei-Fei 2016 (relu1_2, relu2_2, relu3_3, relu4_3).
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                    512, 512, 512, "M", 512, 512, 512, "M")  # fmt: skip
CFGS = {"vgg19": VGG19_CFG, "vgg16": VGG16_CFG}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_layer_names(arch: str = "vgg19") -> list[str]:
    """Names of the modules of torchvision's ``vgg19().features`` (or ``vgg16``), in order (conv1_1, …, pool5)."""
    names, block, i = [], 1, 0
    for v in CFGS[arch]:
        if v == "M":
            names.append(f"pool{block}")
            block, i = block + 1, 0
        else:
            i += 1
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
    return names


def imagenet_weights(arch: str = "vgg19"):
    """torchvision's ImageNet weights enum entry for ``arch``."""
    from torchvision.models import VGG16_Weights, VGG19_Weights

    return (VGG16_Weights if arch == "vgg16" else VGG19_Weights).IMAGENET1K_V1


def imagenet_cache_path(arch: str = "vgg19") -> Path:
    """Where torchvision looks for (and downloads) the ImageNet VGG weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(imagenet_weights(arch).url)


class VGGFeatures(nn.Module):
    """Frozen VGG19 (or VGG16) convolutional features; ``forward(x, layers)`` returns ``{name: activation}``.

    Input: RGB in [0, 1], (B, 3, H, W); ImageNet normalisation happens inside (mean/std are buffers). The
    network is evaluated only up to the deepest requested layer; ``truncate(layers)`` drops everything after
    the deepest layer a model will ever use, so those weights are neither kept nor computed.

    Args:
        weights: ``"imagenet"`` (torchvision's cache, downloaded once when online), a local ``.pth`` path, or
            ``"none"`` for seeded random filters (no download; see the module docstring).
        pool: ``"max"`` (torchvision's VGG), ``"avg"`` (recommended by Gatys et al. and needed by random
            features) or ``"auto"``: avg for ``weights: none``, max otherwise.
        seed: seed of the random filters (``weights: none`` only), so every run and process gets the same net.
        arch: ``"vgg19"`` (Gatys et al.) or ``"vgg16"`` (Johnson et al.'s perceptual losses).
    """

    def __init__(
        self,
        weights: str = "imagenet",
        pool: str = "auto",
        seed: int = 0,
        arch: Literal["vgg19", "vgg16"] = "vgg19",
    ) -> None:
        super().__init__()
        if arch not in CFGS:
            raise UserError(f"arch must be 'vgg19' or 'vgg16', got {arch!r}")
        self.arch = arch
        if pool not in ("auto", "max", "avg"):
            raise UserError(f"pool must be 'auto', 'max' or 'avg', got {pool!r}")
        self.weights, self.seed = weights, seed
        self.random_features = weights.lower() == "none"
        self.pool = ("avg" if self.random_features else "max") if pool == "auto" else pool
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        layers: dict[str, nn.Module] = {}
        in_ch, names = 3, iter(vgg19_layer_names(arch))
        for v in CFGS[arch]:
            if v == "M":
                pool_cls = nn.MaxPool2d if self.pool == "max" else nn.AvgPool2d
                layers[next(names)] = pool_cls(kernel_size=2, stride=2)
            else:
                layers[next(names)] = nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1)
                # Not in-place: a requested conv output must survive its ReLU.
                layers[next(names)] = nn.ReLU(inplace=False)
                in_ch = int(v)
        self.layers = nn.ModuleDict(layers)

        if self.random_features:
            self._init_random(seed)
        if self.random_features and not _warned:
            _warned.append(True)  # once per process: copies (hyperparameters, deepcopy) rebuild the net
            log.warning(
                "VGGFeatures(weights='none'): random VGG filters with %s pooling and per-layer loss "
                "normalisation (He et al. 2016); for the paper's look use weights: imagenet or a local .pth.",
                self.pool,
            )
        if not self.random_features:
            self._load(weights)
        self.requires_grad_(False)
        self.eval()

    def _init_random(self, seed: int) -> None:
        # torchvision's VGG init (Kaiming normal, fan_out), from a private generator so the global RNG (and
        # therefore seed_everything) neither changes nor depends on the features.
        g = torch.Generator().manual_seed(seed)
        for m in self.layers.values():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
                nn.init.zeros_(m.bias)

    def _load(self, weights: str) -> None:
        arch = self.arch.upper()
        if weights.lower() == "imagenet":
            try:
                state = imagenet_weights(self.arch).get_state_dict(progress=False)
            except (URLError, OSError, RuntimeError) as e:
                raise UserError(
                    f"cannot get the ImageNet {arch} weights ({e}): offline and not in torchvision's cache "
                    f"{imagenet_cache_path(self.arch)}. Copy {imagenet_cache_path(self.arch).name} there, or pass a local file with "
                    "--model.features.init_args.weights PATH.pth, or use random features with "
                    "--model.features.init_args.weights none (configs/style/gatys_offline.yaml)"
                ) from e
        else:
            expected = f"a torchvision {arch} state dict (.pth), 'imagenet' or 'none'"
            state = load_tensors(weights, "VGG weights file", expected)
        if any(k.startswith("features.") for k in state):
            state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        # torchvision keys are Sequential indices ("0.weight"); ours are layer names ("conv1_1.weight").
        names = vgg19_layer_names(self.arch)
        try:
            renamed = {f"{names[int(k.split('.')[0])]}.{k.split('.', 1)[1]}": v for k, v in state.items()}
            self.layers.load_state_dict(renamed, strict=False)
        except (ValueError, IndexError, RuntimeError) as e:
            raise UserError(f"VGG weights {weights} are not a torchvision {arch} state dict ({e})") from e
        missing = [
            n for n, m in self.layers.items() if isinstance(m, nn.Conv2d) and f"{n}.weight" not in renamed
        ]
        if missing:
            raise UserError(f"VGG weights {weights} lack layers {missing[:3]}…; pass a full {arch} state dict")

    def __reduce__(self):
        # Frozen and fully determined by its arguments: pickles (checkpoint hyperparameters, hparams.yaml,
        # deepcopy, spawn) store those instead of ~80 MB of weights, and rebuild the same network.
        return (_rebuild, (self.weights, self.pool, self.seed, list(self.layers.keys())[-1], self.arch))

    def truncate(self, layers: Sequence[str]) -> VGGFeatures:
        """Drop every layer after the deepest of ``layers`` (unknown names raise a ``UserError``)."""
        names = list(self.layers.keys())
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise UserError(
                f"unknown {self.arch.upper()} layer(s) {unknown}; valid names are "
                f"{', '.join(vgg19_layer_names(self.arch))}"
            )
        last = max(names.index(n) for n in layers)
        for name in names[last + 1 :]:
            del self.layers[name]
        return self

    def forward(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Activations of ``layers`` for RGB ``x`` in [0, 1], (B, 3, H, W); stops after the deepest one."""
        wanted, out = set(layers), {}
        h = (x - self.mean) / self.std
        for name, module in self.layers.items():
            h = module(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out


def _rebuild(weights: str, pool: str, seed: int, last_layer: str, arch: str = "vgg19") -> VGGFeatures:
    return VGGFeatures(weights, pool, seed, arch).truncate([last_layer])


# Checkpoints made from Python (not the CLI) keep the features in their hyperparameters as this call; allow it
# under torch.load(weights_only=True): it only rebuilds the net from its arguments.
torch.serialization.add_safe_globals([_rebuild])
