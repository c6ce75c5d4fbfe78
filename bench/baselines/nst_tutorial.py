"""The PyTorch "Neural Transfer" tutorial's recipe (pytorch.org/tutorials/advanced/neural_style_tutorial.html),
the plain-PyTorch reference of the Gatys cases in ``bench/style.py``.

A ``nn.Sequential`` with loss modules after the conv layers (trimmed after the last one), target Grams computed
once, ``optim.LBFGS([input_img])`` with its defaults (lr 1, max_iter 20, history 100, no line search), the image
clamped *inside* the closure, content init, style weight 1e6, content weight 1, its layers ``conv_4`` (= conv2_2)
for content and ``conv_1…conv_5`` (= conv1_1, conv1_2, conv2_1, conv2_2, conv3_1) for style. Both sides use the
same seeded random VGG19 (no weights can be downloaded here): ``shared_vgg`` writes it as a local
torchvision-layout ``.pth`` for ``VGGFeatures(path)`` and loads it into torchvision's ``vgg19().features``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from aigc_lightning.datamodules.style import cover_crop
from aigc_lightning.nets import VGGFeatures
from aigc_lightning.nets.vgg import IMAGENET_MEAN, IMAGENET_STD, vgg19_layer_names

CONTENT, STYLE = ["conv2_2"], ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]  # the tutorial's layers
# (content, style) from scikit-image's bundled samples, fixed before any measurement.
PAIRS = [("astronaut", "coffee"), ("chelsea", "astronaut"), ("rocket", "immunohistochemistry"),
         ("coffee", "brick"), ("immunohistochemistry", "grass"), ("camera", "gravel")]  # fmt: skip


def load(name: str, size: int) -> torch.Tensor:
    """A scikit-image sample as (1, 3, size, size) RGB in [0, 1] (grey images repeated, centre square)."""
    from skimage import data

    a = getattr(data, name)()
    a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255  # (3, H, W)
    return cover_crop(x, (size, size))[None]


def tutorial_gram(x):
    a, b, c, d = x.size()
    features = x.view(a * b, c * d)
    return torch.mm(features, features.t()).div(a * b * c * d)


class ContentLoss(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.target = target.detach()

    def forward(self, x):
        self.loss = F.mse_loss(x, self.target)
        return x


class StyleLoss(nn.Module):
    def __init__(self, target_feature):
        super().__init__()
        self.target = tutorial_gram(target_feature).detach()

    def forward(self, x):
        self.loss = F.mse_loss(tutorial_gram(x), self.target)
        return x


class Normalization(nn.Module):
    def __init__(self):
        super().__init__()
        self.mean = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(-1, 1, 1)

    def forward(self, img):
        return (img - self.mean) / self.std


def tutorial_model(cnn, style_img, content_img):
    content_losses, style_losses = [], []
    model = nn.Sequential(Normalization())
    i = 0
    for layer in cnn.children():
        if isinstance(layer, nn.Conv2d):
            i += 1
            name = f"conv_{i}"
        elif isinstance(layer, nn.ReLU):
            name, layer = f"relu_{i}", nn.ReLU(inplace=False)
        elif isinstance(layer, nn.MaxPool2d):
            name = f"pool_{i}"
        else:
            name = f"bn_{i}"
        model.add_module(name, layer)
        if name == "conv_4":
            cl = ContentLoss(model(content_img).detach())
            model.add_module(f"content_loss_{i}", cl)
            content_losses.append(cl)
        if name in ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5"):
            sl = StyleLoss(model(style_img).detach())
            model.add_module(f"style_loss_{i}", sl)
            style_losses.append(sl)
    for i in range(len(model) - 1, -1, -1):
        if isinstance(model[i], (ContentLoss, StyleLoss)):
            break
    return model[: i + 1], style_losses, content_losses


def run_tutorial(cnn, content_img, style_img, num_steps, style_weight=1e6, content_weight=1):
    """The tutorial's ``run_style_transfer``; returns [(seconds, loss)] per evaluation and the final image."""
    trace, start = [], time.perf_counter()
    input_img = content_img.clone()
    model, style_losses, content_losses = tutorial_model(cnn, style_img, content_img)
    input_img.requires_grad_(True)
    model.eval()
    model.requires_grad_(False)
    optimizer = torch.optim.LBFGS([input_img])
    run = [0]
    while run[0] < num_steps:

        def closure():
            with torch.no_grad():
                input_img.clamp_(0, 1)
            optimizer.zero_grad()
            model(input_img)
            style_score = sum(sl.loss for sl in style_losses) * style_weight
            content_score = sum(cl.loss for cl in content_losses) * content_weight
            loss = style_score + content_score
            loss.backward()
            run[0] += 1
            trace.append((time.perf_counter() - start, loss.item()))
            return loss

        optimizer.step(closure)
    return trace


def shared_vgg() -> tuple[Path, nn.Module]:
    """The same seeded random VGG19 for both sides: a local torchvision-layout .pth and torchvision's features."""
    index = {n: i for i, n in enumerate(vgg19_layer_names())}
    source = VGGFeatures("none", pool="max", seed=0)
    state = {
        f"features.{index[k.split('.')[0]]}.{k.split('.')[1]}": v
        for k, v in source.layers.state_dict().items()
    }
    pth = Path(tempfile.mkdtemp()) / "vgg19_random.pth"
    torch.save(state, pth)
    vgg = torchvision.models.vgg19(weights=None)
    vgg.load_state_dict(state, strict=False)
    return pth, vgg.features.eval()
