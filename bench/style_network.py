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


# ----------------------------------------------------------------------------------------------------------
# Content kept, colours taken, flicker: style_network_quality


def unseen_photos(names: list[str]) -> dict[str, torch.Tensor]:
    """scikit-image photos by name (none of them in the docs' training folder), RGB (1, 3, H, W) in [0, 1]."""
    from skimage import data

    out = {}
    for name in names:
        a = torch.from_numpy(getattr(data, name)()).float() / 255
        a = a[..., None].expand(-1, -1, 3) if a.ndim == 2 else a[..., :3]
        out[name] = a.permute(2, 0, 1)[None].contiguous()
    return out


def style_loss_of(
    model: StyleNetwork, y: torch.Tensor, x: torch.Tensor, style: torch.Tensor
) -> tuple[float, float]:
    """The model's own (content, style) losses of output ``y`` for input ``x`` and the style image."""
    with torch.no_grad():
        grams = model.perceptual.style_grams([style[0]], torch.ones(1))
        losses = model.perceptual(y, model.perceptual.targets(x, grams))
    return float(losses["content"].mean()), float(losses["style"].mean())


def style_network_quality(args) -> dict:
    """Feed-forward style network: does it keep the content at every frame size, take the style's colours, and
    stay stable on video?

Content: unseen photos (``--photos``, scikit-image names) resized to each ``--sizes`` (longer side) and stylised;
``edge`` is the Pearson correlation of Sobel edge magnitudes of output and input (1: the same edges),
``colour gap`` is |RGB mean/std of output − style's| / |input's − style's| (1: the input's colours; ≤ 0.5: moved
at least halfway to the style's). Gatys (``StyleTransfer`` as configs/style/gatys_offline.yaml, the same random
VGG19) on the same photos at ``--gatys-size`` for reference.

Flicker: a pan (``--pan`` px per frame, sensor noise ``--noise``) over chelsea, stylised by the checkpoint
untreated, with ``temporal_smoothing`` values and, with ``--temporal-checkpoint``, by a network trained with the
temporal loss. ``warp err`` is the mean |y_t − warp(y_{t−1})| over pixels visible in both frames with the known
motion, ``warp err (Farnebäck)`` the same with OpenCV's optical flow (a real clip, ``--video``, has only this:
both columns then show it);
``trail`` is the mean |y_t − S(x_t)| to the frame's own untreated stylisation (ghosting); ``style`` is the style
loss of the output frames (equal style loss: compare flicker at equal style strength).

    python -m bench style_network_quality --checkpoint RUN/checkpoints/last.ckpt --style STYLE.png \
        --temporal-checkpoint RUN_T/checkpoints/last.ckpt --threads 1
"""
    from aigc_lightning.datamodules.style import read_rgb, resize_longer
    from aigc_lightning.motion import affine_grid, colour_gap_ratio, edge_correlation, warping_error

    torch.set_num_threads(args.threads)
    load = lambda p: StyleNetwork.load_from_checkpoint(p, map_location="cpu").eval()
    model = load(args.checkpoint)
    style = resize_longer(read_rgb(args.style), 256)[None]
    rows, notes = [], [f"threads {args.threads}; checkpoint {args.checkpoint}; style {args.style}"]
    gatys = gatys_module() if args.gatys_steps else None
    for name, photo in unseen_photos(args.photos).items():
        for size in args.sizes:
            x = resize_longer(photo[0], size)[None]
            with torch.no_grad():
                y = model.stylize(x)
            content, style_l = style_loss_of(model, y, x, style)
            row = {"photo": name, "size": f"{x.shape[-1]}×{x.shape[-2]}", "edge": round(float(edge_correlation(y, x)), 3),
                   "colour gap": round(float(colour_gap_ratio(y, x, style)), 3), "content loss": round(content, 3),
                   "style loss": round(style_l, 3)}  # fmt: skip
            if gatys is not None and size == args.gatys_size:
                from aigc_lightning.datamodules.style import cover_crop

                g = gatys.stylize(x, cover_crop(style[0], tuple(x.shape[-2:]))[None], steps=args.gatys_steps)
                row.update({"Gatys edge": round(float(edge_correlation(g, x)), 3),
                            "Gatys colour gap": round(float(colour_gap_ratio(g, x, style)), 3)})  # fmt: skip
            rows.append(row)
    edges, gaps = [r["edge"] for r in rows], [r["colour gap"] for r in rows]
    summary = {"min edge": min(edges), "max colour gap": max(gaps),
               "all sizes pass (edge ≥ 0.3, gap ≤ 0.5)": all(e >= 0.3 for e in edges) and max(gaps) <= 0.5}  # fmt: skip

    # flicker on a pan with known motion
    from aigc_lightning.motion import farneback_grids

    if args.video:  # a real clip: optical flow only
        clip = torch.cat(list(VideoClip(args.video).frames(args.frames)))[: args.frames]
    else:
        clip = pan_clip(args.frames, args.pan, 192, 208, args.noise)  # uint8 (T, H, W, 3)
    frames = clip.permute(0, 3, 1, 2).float() / 255
    flow = farneback_grids(clip)
    known = flow if args.video else affine_grid(len(clip) - 1, 192, 208, shift=(-args.pan, 0))
    base = torch.cat(list(model.stylize_frames(clip.split(8)))).permute(0, 3, 1, 2).float() / 255
    treatments = [(f"smoothing {a}" if a else "untreated", model, a) for a in args.smoothing]
    if args.temporal_checkpoint:
        treatments.append(("temporal loss", load(args.temporal_checkpoint), 0.0))
    flicker_rows = [{"treatment": "input clip", "warp err": round(float(warping_error(frames, known).mean()) * 255, 2),
                     "warp err (Farnebäck)": round(float(warping_error(frames, flow).mean()) * 255, 2)}]  # fmt: skip
    for label, m, a in treatments:
        m.hparams.temporal_smoothing = a
        y = torch.cat(list(m.stylize_frames(clip.split(8)))).permute(0, 3, 1, 2).float() / 255
        own = base if m is model else y
        _, style_l = style_loss_of(model, y, frames, style)
        flicker_rows.append({"treatment": label, "warp err": round(float(warping_error(y, known).mean()) * 255, 2),
                             "warp err (Farnebäck)": round(float(warping_error(y, flow).mean()) * 255, 2),
                             "trail": round(float((y - own).abs().mean()) * 255, 2),
                             "edge": round(float(edge_correlation(y, frames).mean()), 3),
                             "style loss": round(style_l, 3)})  # fmt: skip
    model.hparams.temporal_smoothing = 0.0
    notes.append(
        f"pan clip: {args.frames} frames of 192×208, {args.pan} px/frame, noise σ {args.noise}; errors in 0–255"
    )
    if args.picture:
        x = unseen_photos(["astronaut"])["astronaut"]
        x = resize_longer(x[0], 256)[None]
        panels = [x, model.stylize(x).detach()]
        if args.temporal_checkpoint:
            panels.append(load(args.temporal_checkpoint).stylize(x).detach())
        from aigc_lightning.datamodules.style import cover_crop

        panels.append(cover_crop(style[0], tuple(x.shape[-2:]))[None])
        save_small(torch.cat(panels), len(panels), args.picture)
        notes.append(
            f"picture (astronaut, stylised, {'temporal-loss model, ' if args.temporal_checkpoint else ''}style): {args.picture}"
        )
    return {"rows": rows, "flicker": flicker_rows, "summary": summary, "notes": notes}


def style_network_quality_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a StyleNetwork checkpoint")
    p.add_argument("--style", required=True, help="the style image it was trained on")
    p.add_argument("--temporal-checkpoint", help="the same config trained with --model.temporal_weight")
    p.add_argument("--photos", nargs="+", default=["astronaut", "chelsea", "moon"])
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 256, 512])
    p.add_argument("--gatys-size", type=int, default=96)
    p.add_argument("--gatys-steps", type=int, default=20, help="LBFGS steps of the Gatys reference (0: none)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--pan", type=int, default=3)
    p.add_argument("--noise", type=float, default=3.0)
    p.add_argument("--smoothing", type=float, nargs="+", default=[0.0, 0.3, 0.5])
    p.add_argument("--picture", help="write astronaut | stylised | (temporal) | style to this PNG")
    p.add_argument(
        "--video", help="a real clip instead of the pan (first --frames frames; Farnebäck flow only)"
    )
