"""Style transfer speed: time to reach the PyTorch tutorial's final loss, and seconds per loss evaluation.

Reference (measured in the same run): the PyTorch "Neural Transfer" tutorial's recipe, verbatim in spirit — a
``nn.Sequential`` with loss modules inserted after the conv layers (trimmed after the last one), target Grams
computed once, ``optim.LBFGS([input_img])`` with defaults, the image clamped *inside* the closure, content init,
``num_steps`` evaluations, style weight 1e6, the tutorial's layers (conv_4 = conv2_2 for content, conv_1…conv_5 =
conv1_1…conv3_1 for style).

Ours: ``StyleTransfer`` with the same features, image, layers, loss definitions and weights, run until its
clamped image's total loss is at or below the reference's final loss (checked after every LBFGS step; the check's
forward pass is counted in our time). Variants: clamp after the step (single scale), plus coarse-to-fine.

No pretrained weights can be downloaded here, so both sides use the same seeded random VGG19 filters with max
pooling (``VGGFeatures("none", pool="max")`` copied into torchvision's ``vgg19().features`` layout).

    python bench/style_speed.py                 # 128 px, 300 reference evaluations, + s/eval at 128/256/512
    python bench/style_speed.py --size 64 --steps 100 --eval-sizes 64   # a quick check
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aigc_lightning.modules import StyleTransfer
from aigc_lightning.nets import VGGFeatures
from aigc_lightning.nets.vgg import IMAGENET_MEAN, IMAGENET_STD, VGG19_CFG, vgg19_layer_names

CONTENT, STYLE = ["conv2_2"], ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]  # the tutorial's layers


# ----------------------------------------------------------------------------------------------------------
# The tutorial's recipe (pytorch.org/tutorials/advanced/neural_style_tutorial.html)


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
        else:
            name = f"pool_{i}"
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
    input_img = content_img.clone()
    model, style_losses, content_losses = tutorial_model(cnn, style_img, content_img)
    input_img.requires_grad_(True)
    model.eval()
    model.requires_grad_(False)
    optimizer = torch.optim.LBFGS([input_img])
    run = [0]
    while run[0] <= num_steps:

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
            return loss

        optimizer.step(closure)
    with torch.no_grad():
        input_img.clamp_(0, 1)
    return input_img, run[0]


# ----------------------------------------------------------------------------------------------------------
# Ours


def run_ours(m: StyleTransfer, content, style, target_loss: float, max_steps: int = 200):
    """LBFGS steps (clamp after each) per scale until the full-size clamped image's loss ≤ ``target_loss``."""
    weights = torch.ones(1)
    sizes = m.scale_sizes(tuple(content.shape[-2:]))
    full = m.targets(content, style, weights, sizes[-1])
    image, evals = None, 0
    for k, (size, steps) in enumerate(zip(sizes, m.scale_steps)):
        t = full if k == len(sizes) - 1 else m.targets(content, style, weights, size)
        x = m.initial_image(t) if image is None else F.interpolate(image.detach(), size=size, mode="bilinear")
        image = nn.Parameter(x.clamp(0, 1).contiguous())
        opt = m.optimizer([image])

        def closure(opt=opt, image=image, t=t):
            nonlocal evals
            opt.zero_grad()
            loss = m.objective(image, t)["loss"]
            loss.backward()
            evals += 1
            return loss

        last = k == len(sizes) - 1
        for _ in range(max_steps if last else steps):
            opt.step(closure)
            with torch.no_grad():
                image.clamp_(0, 1)
                if last and m.objective(image, full)["loss"].item() <= target_loss:
                    return image, evals, True
    return image, evals, False


def images(size: int):
    from skimage import data

    def prep(a):
        x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)

    return prep(data.astronaut()), prep(data.coffee())


def seconds_per_eval(m: StyleTransfer, size: int, n: int = 3) -> float:
    content, style = images(size)
    t = m.targets(content, style, torch.ones(1), (size, size))
    x = nn.Parameter(content.clone())
    m.objective(x, t)["loss"].backward()  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        m.objective(x, t)["loss"].backward()
    return (time.perf_counter() - start) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--size", type=int, default=128, help="image size of the time-to-loss race (tutorial's CPU size)"
    )
    p.add_argument("--steps", type=int, default=300, help="reference evaluations (the tutorial's num_steps)")
    p.add_argument("--eval-sizes", type=int, nargs="*", default=[128, 256, 512])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    features = VGGFeatures("none", pool="max")
    cnn = nn.Sequential()  # torchvision's vgg19().features layout with the very same weights
    for name, module in zip(vgg19_layer_names(), features.layers.values()):
        cnn.add_module(str(len(cnn)), module if not isinstance(module, nn.ReLU) else nn.ReLU(inplace=True))
    assert len(cnn) == len(VGG19_CFG) + sum(v != "M" for v in VGG19_CFG)

    def ours(**kw):
        return StyleTransfer(VGGFeatures("none", pool="max"), content_layers=CONTENT, style_layers=STYLE,
                             normalize_layers=False, style_weight=1e6, content_weight=1.0, **kw)  # fmt: skip

    content, style = images(args.size)
    judge = ours()
    full = judge.targets(content, style, torch.ones(1), (args.size, args.size))

    start = time.perf_counter()
    ref_img, ref_evals = run_tutorial(cnn, content, style, args.steps)
    ref_time = time.perf_counter() - start
    with torch.no_grad():
        ref_loss = judge.objective(ref_img, full)["loss"].item()

    rows = [("tutorial recipe (clamp inside closure)", ref_time, ref_evals, ref_loss, True)]
    variants = {
        "ours: clamp after step, 1 scale": {},
        "ours: + coarse-to-fine (0.5 x 5 steps)": {"scales": (0.5, 1.0), "scale_steps": (5, 1)},
    }
    for label, kw in variants.items():
        m = ours(**kw)
        start = time.perf_counter()
        img, evals, reached = run_ours(m, content, style, ref_loss)
        elapsed = time.perf_counter() - start
        with torch.no_grad():
            rows.append((label, elapsed, evals, judge.objective(img, full)["loss"].item(), reached))

    print(f"\nStyle transfer, {args.size} px, random VGG19 (seed 0, max pool), {args.threads} CPU threads, "
          f"target = tutorial's loss after {args.steps} evaluations")  # fmt: skip
    print(
        f"{'run':44s} {'seconds':>8s} {'evals':>6s} {'final loss':>11s} {'reached':>8s} {'time ratio':>10s}"
    )
    for label, secs, evals, loss, reached in rows:
        print(f"{label:44s} {secs:8.2f} {evals:6d} {loss:11.4g} {reached!s:>8s} {secs / ref_time:10.2f}")

    if args.eval_sizes:
        paper = StyleTransfer(
            VGGFeatures("none", pool="max"), normalize_layers=False
        )  # conv4_2 / conv1_1…conv5_1
        tut = ours()
        print(f"\nSeconds per loss evaluation (forward + backward), {args.threads} CPU threads")
        print(f"{'size':>6s} {'tutorial layers':>16s} {'paper layers':>13s}")
        for s in args.eval_sizes:
            print(f"{s:6d} {seconds_per_eval(tut, s):16.3f} {seconds_per_eval(paper, s):13.3f}")


if __name__ == "__main__":
    main()
