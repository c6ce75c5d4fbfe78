"""The feed-forward style network: images/s against the Gatys module, and video flicker."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.utils import make_grid

from aigc_lightning.datamodules.video import VideoClip
from aigc_lightning.modules import StyleNetwork, StyleTransfer
from aigc_lightning.nets import TransformNet, VGGFeatures
from bench.common import median_seconds


def photo(size: int) -> torch.Tensor:
    """scikit-image's chelsea (not in the docs' training photos), resized to ``size`` × ``size`` (0: its own
    451 × 300): (1, 3, S, S)."""
    from skimage import data

    x = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float()[None] / 255  # (1, 3, 300, 451)
    if size == 0:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def gatys_module() -> StyleTransfer:
    """StyleTransfer as configs/style/gatys_offline.yaml sets it up (LBFGS lr 1, max_iter 20, history 100)."""
    features = VGGFeatures("none", pool="avg", seed=0)
    return StyleTransfer(
        features, content_layers=["conv3_1"], style_layers=["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1"],
        style_weight=200.0, tv_weight=20.0, normalize_layers=True,
        optimizer=lambda p: torch.optim.LBFGS(p, lr=1.0, max_iter=20, history_size=100),
    )  # fmt: skip


def pan_clip(frames: int, pan: int, height: int, width: int, noise: float) -> torch.Tensor:
    """uint8 (T, H, W, 3): a window panning ``pan`` px per frame over chelsea, plus Gaussian sensor noise."""
    from skimage import data

    full = torch.from_numpy(data.chelsea()).float()  # (300, 451, 3)
    scale = height / full.shape[0]
    full = F.interpolate(full.permute(2, 0, 1)[None], scale_factor=scale, mode="bilinear", antialias=True)[0]
    if (frames - 1) * pan + width > full.shape[-1]:
        raise SystemExit(
            f"--frames {frames} × --pan {pan} runs off the photo; use fewer frames or a smaller pan"
        )
    g = torch.Generator().manual_seed(0)
    clip = [full[:, :, t * pan : t * pan + width].permute(1, 2, 0) for t in range(frames)]  # (H, W, 3) each
    x = torch.stack(clip) + noise * torch.randn(frames, height, width, 3, generator=g)
    return x.clamp(0, 255).round().to(torch.uint8)


def save_small(images: torch.Tensor, nrow: int, path: str) -> None:
    """A grid of (N, 3, H, W) in [0, 1] as a 256-colour PNG (docs pictures: a third of the RGB file's size)."""
    grid = make_grid(images.clamp(0, 1), nrow=nrow, padding=4, pad_value=1.0)  # (3, H', W')
    rgb = grid.mul(255).add(0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(rgb).quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def flicker(frames: torch.Tensor) -> float:
    """Mean |frame_t − frame_{t−1}| over a uint8 (T, H, W, 3) clip, in 0–255 units."""
    f = frames.float()
    return float((f[1:] - f[:-1]).abs().mean())


def style_network_speed(args) -> dict:
    """Feed-forward style network: images/s at 256 and 512 px against the Gatys module, and video flicker.

Speed: ``StyleNetwork.stylize`` (one forward pass) on 1 image at each size, median of ``--reps`` after a warm-up,
against ``StyleTransfer.stylize`` (the Gatys module as configured in configs/style/gatys_offline.yaml: random
VGG19, LBFGS with max_iter 20) on the same image. The Gatys run is cut to ``--gatys-steps`` LBFGS steps to keep
the bench short; its time per step is measured and the config's full 20 steps are extrapolated from it (LBFGS
steps at a fixed size cost about the same; the line is marked "extrapolated").

Flicker: a synthetic clip — a slow pan (``--pan`` px per frame) across a photo the network did not train on
(scikit-image's chelsea) with a little sensor noise, as a camera gives — stylised frame by frame. Flicker is
mean |frame_t − frame_{t−1}| of the stylised frames over the same for the input frames (1.0: the output changes
no more than the input does); reported for several ``temporal_smoothing`` values. ``--video FILE`` uses a real
video's first ``--frames`` frames instead.

    python -m bench style_network_speed --checkpoint RUN/checkpoints/last.ckpt --threads 1
    python -m bench style_network_speed --checkpoint CKPT --strip docs/style_network_frames.png \
        --picture docs/style_network.png --style STYLE.png       # + the docs' frame strip and picture
"""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.checkpoint:
        model = StyleNetwork.load_from_checkpoint(args.checkpoint, map_location="cpu", weights_only=False)
    else:  # speed only: the paper's width 32 and 5 residual blocks, untrained
        features = VGGFeatures("none", pool="avg")
        model = StyleNetwork(
            TransformNet(32, 5), features, content_layers=["conv3_1"], style_layers=["relu1_1"]
        )
    model.eval()
    net = model.network
    params = sum(p.numel() for p in net.parameters()) / 1e6
    notes = [
        f"threads {args.threads}; network width {net.width}, {net.num_residual} residual blocks, {params:.2f} M parameters"
    ]
    rows, result = [], {}

    gatys = gatys_module()
    paper = StyleNetwork(
        TransformNet(32, 5), VGGFeatures("none"), content_layers=["conv1_1"], style_layers=["relu1_1"]
    )
    for size in args.sizes:
        x = photo(size)
        with torch.no_grad():
            ff = median_seconds(lambda x=x: model.stylize(x), args.reps)
            ff_paper = median_seconds(lambda x=x: paper.eval().stylize(x), args.reps)
        style = photo(size).flip(-1)  # any style image: the cost does not depend on its content
        t = time.perf_counter()
        gatys.stylize(x, style, steps=args.gatys_steps)
        per_step = (time.perf_counter() - t) / args.gatys_steps
        rows.append({"size": size, "feed-forward s/image": round(ff, 3), "images/s": round(1 / ff, 1),
                     "paper width (32, 5 blocks) s/image": round(ff_paper, 3), "paper images/s": round(1 / ff_paper, 1),
                     "Gatys s/LBFGS step": round(per_step, 2), "Gatys 20 steps (extrapolated)": round(20 * per_step, 1),
                     "ratio to feed-forward": f"{20 * per_step / ff:.0f}×"})  # fmt: skip

    result.update(rows=rows, notes=notes)
    if not args.checkpoint:
        return result
    if args.picture:
        x = photo(0)  # chelsea at its own size, 451 × 300: larger than the 128 px training crops
        with torch.no_grad():
            y = model.stylize(x)
        panels = [x, y]
        if args.style:
            from aigc_lightning.datamodules.style import cover_crop, read_rgb

            panels.append(cover_crop(read_rgb(args.style), tuple(x.shape[-2:]))[None])
        small = [F.interpolate(p, scale_factor=0.6, mode="bilinear", antialias=True) for p in panels]
        save_small(torch.cat(small), len(small), args.picture)
        notes.append(f"picture (chelsea, stylised{', style' if args.style else ''}): {args.picture}")
    if args.video:
        clip = torch.cat(list(VideoClip(args.video).frames(args.frames)))[: args.frames]
    else:
        clip = pan_clip(args.frames, args.pan, 192, 208, args.noise)  # chelsea is 288 px wide at 192 high
    base = flicker(clip)
    notes.append(
        f"flicker of the input clip ({len(clip)} frames, {tuple(clip.shape[1:3])}): {base:.2f} (0–255 units)"
    )
    outputs, result["flicker"] = {}, []
    for a in args.smoothing:
        model.hparams.temporal_smoothing = a
        out = torch.cat(list(model.stylize_frames(clip.split(8))))
        outputs[a] = out
        lag = float((out.float() - outputs[args.smoothing[0]].float()).abs().mean())
        result["flicker"].append(
            {
                "temporal_smoothing": a,
                "stylised flicker": round(flicker(out), 2),
                "ratio to input": round(flicker(out) / base, 2),
                "mean |Δ| to unsmoothed": round(lag, 2),
            }
        )
    if args.strip:
        pick = np.linspace(0, len(clip) - 1, 4).round().astype(int).tolist()
        strip = [clip[pick]] + [outputs[a][pick] for a in (args.smoothing[0], args.smoothing[-1])]
        tiles = torch.cat(strip).permute(0, 3, 1, 2).float() / 255  # (3·4, 3, H, W)
        tiles = F.interpolate(tiles, scale_factor=0.5, mode="bilinear", antialias=True)
        save_small(tiles, len(pick), args.strip)
        notes.append(
            f"frame strip (rows: input, smoothing {args.smoothing[0]}, {args.smoothing[-1]}): {args.strip}"
        )
    return result


def style_network_speed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="a StyleNetwork checkpoint (flicker needs a trained one)")
    p.add_argument("--sizes", type=int, nargs="*", default=[256, 512])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--gatys-steps", type=int, default=2, help="LBFGS steps actually run per size")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--pan", type=int, default=3)
    p.add_argument("--noise", type=float, default=3.0, help="sensor noise std, 0–255 units")
    p.add_argument("--smoothing", type=float, nargs="*", default=[0.0, 0.3, 0.5, 0.7])
    p.add_argument("--video", help="measure flicker on this video instead of the synthetic pan")
    p.add_argument("--strip", help="write a frame strip (input / stylised / smoothed) to this PNG")
    p.add_argument("--picture", help="write chelsea | stylised | --style to this PNG (needs --checkpoint)")
    p.add_argument("--style", help="the style image shown in --picture")
