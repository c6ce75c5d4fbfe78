"""``configs/style/fast_offline.yaml`` as a plain PyTorch script: the feed-forward style network without the framework.

The project's ``TransformNet`` (width 16, 3 residual blocks) and ``VGGFeatures`` (random VGG19 filters, seed 0,
average pooling, cut after the deepest layer used), the same photos (the config's seeded choice of one held-out
photo is left out of training), random 128-px crops (shorter side resized to 128, random position, random flip)
read from the files per crop as ``ContentDataModule`` does, 30 epochs of 64 crops in batches of 4, the style image
resized to 256 px on its longer side, Adam (lr 1e-3), the config's loss (content on conv3_1, Gram style on
relu1_1 … relu3_1, both normalised per layer, weights 1 / 5 / TV 20), one ``torch.save`` at the end. The loop is
written out here; only the math is the project's (nets, ``losses``). No validation, logging or checkpoints: the
reference ``python -m bench user_overhead`` times ``python -m aigc_lightning fit --config configs/style/fast_offline.yaml``
against.

    python -m bench.baselines.style_network --content PHOTOS_DIR --style STYLE.png --out /tmp/plain_style.pt
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from aigc_lightning.losses import content_loss, gram_matrix, style_loss, total_variation
from aigc_lightning.nets import TransformNet, VGGFeatures

CONTENT_LAYERS = ["conv3_1"]
STYLE_LAYERS = ["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1"]
CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT = 1.0, 5.0, 20.0
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def read(path: Path) -> torch.Tensor:
    """An image file as RGB in [0, 1], (3, H, W)."""
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


def resize(x: torch.Tensor, side: int, shorter: bool) -> torch.Tensor:
    """Resize (3, H, W) so its shorter (or longer) side is ``side``, aspect kept, antialiased."""
    h, w = x.shape[-2:]
    s = side / (min(h, w) if shorter else max(h, w))
    size = (max(side, round(h * s)), max(side, round(w * s))) if shorter else (round(h * s), round(w * s))
    return F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def crop(path: Path, size: int) -> torch.Tensor:
    """A random ``size`` square crop of the photo (shorter side resized to ``size``), flipped half the time."""
    x = resize(read(path), size, shorter=True)
    top, left = (int(torch.randint(0, n - size + 1, ())) for n in x.shape[-2:])
    x = x[:, top : top + size, left : left + size]  # (3, S, S)
    return x.flip(-1) if bool(torch.rand(()) < 0.5) else x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", required=True, help="a folder of photos")
    parser.add_argument("--style", required=True, help="the style image")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--epoch_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--max_batches", type=int, default=None, help="stop after N batches (smoke tests)")
    parser.add_argument("--out", default="plain_style_network.pt")
    args = parser.parse_args()

    torch.manual_seed(0)
    photos = sorted(p for p in Path(args.content).rglob("*") if p.suffix.lower() in EXTENSIONS)
    order = list(range(len(photos)))
    random.Random(0).shuffle(order)  # the config's val_images 1: the same photo held out, never trained on
    train = sorted(photos[i] for i in order[min(1, len(photos) - 1) :])
    net = TransformNet(width=16, num_residual=3)
    vgg = VGGFeatures(weights="none", pool="avg", seed=0, arch="vgg19")
    vgg = vgg.truncate(CONTENT_LAYERS + STYLE_LAYERS)  # nothing deeper than relu3_1 is ever computed
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    with torch.no_grad():
        f_style = vgg(resize(read(Path(args.style)), 256, shorter=False)[None], STYLE_LAYERS)
        grams = {n: gram_matrix(f_style[n]) for n in STYLE_LAYERS}  # (1, C, C)
    batches = 0
    for _ in range(args.epochs):
        perm = torch.randperm(args.epoch_size).tolist()
        for i in range(0, args.epoch_size, args.batch_size):
            if args.max_batches is not None and batches >= args.max_batches:
                break
            files = [train[j % len(train)] for j in perm[i : i + args.batch_size]]  # cycles the photos
            x = torch.stack([crop(f, args.image_size) for f in files])  # (B, 3, S, S) in [0, 1]
            y = (net(x * 2 - 1) + 1) / 2  # the net maps [-1, 1] → [-1, 1]; VGG and the losses take [0, 1]
            with torch.no_grad():
                f_x = vgg(x, CONTENT_LAYERS)
            f_y = vgg(y, CONTENT_LAYERS + STYLE_LAYERS)
            # each layer's loss over its target's mean square: random filters give layers very different scales
            c = sum(
                content_loss(f_y[n], f_x[n]) / f_x[n].pow(2).flatten(1).mean(1).clamp_min(1e-12)
                for n in CONTENT_LAYERS
            )  # fmt: skip
            s = sum(
                style_loss(gram_matrix(f_y[n]), grams[n].expand(len(y), -1, -1)) / grams[n].pow(2).mean().clamp_min(1e-12)
                for n in STYLE_LAYERS
            )  # fmt: skip
            loss = CONTENT_WEIGHT * c.mean() + STYLE_WEIGHT * s.mean() + TV_WEIGHT * total_variation(y).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            batches += 1
            if not torch.isfinite(loss):  # what any training script checks
                raise SystemExit(f"non-finite loss at batch {batches}")
    torch.save({"network": net.state_dict()}, args.out)
    print(f"plain style network: {batches} batches on {len(train)} photos, saved {args.out}")


if __name__ == "__main__":
    main()
