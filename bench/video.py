"""Video generation quality: a moving-digits MoCoGAN checkpoint's clips against the data's."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from aigc_lightning.callbacks.video_metrics import clip_statistics, frame_fid
from aigc_lightning.datamodules import MovingDigitsDataModule
from aigc_lightning.modules import VideoGAN
from aigc_lightning.modules.video_gan import frame_strips
from aigc_lightning.pixels import to_unit


def _row(name: str, clips: torch.Tensor, reference: torch.Tensor, crop: int) -> dict:
    stats = clip_statistics(clips, crop=crop)
    return {"clips": name, "n": len(clips), "one label, all frames %": round(100 * stats["consistency"], 1),
            "frames agreeing with frame 0 %": round(100 * stats["frame_agreement"], 1),
            "displacement px/frame": round(stats["displacement"], 3),
            "frame FID": round(frame_fid(reference, clips)["fid"], 2)}  # fmt: skip


def save_strips(model: VideoGAN, real: torch.Tensor, path: Path, rows: int = 6) -> None:
    """A PNG of frame strips, 8 frames spread over each clip, one clip per row, three panels side by side: real
    clips, generated clips (seeds 0 …), and the content of seed 0 under the motions of seeds 0 … (2x upscaled)."""
    from torchvision.utils import make_grid, save_image

    same_content = model.generate_clips(torch.zeros(rows, dtype=torch.long), torch.arange(rows))
    panels = [real[:rows], model.sample_video(rows, seed=0), same_content]
    grids = [make_grid(frame_strips(p.float().cpu()), nrow=8, padding=2, pad_value=0.5) for p in panels]
    gap = torch.full((grids[0].shape[0], grids[0].shape[1], 8), 1.0)
    picture = torch.cat([grids[0], gap, grids[1], gap, grids[2]], 2)
    save_image(torch.nn.functional.interpolate(picture[None], scale_factor=2, mode="nearest")[0], path)


def video_digits(args) -> dict:
    """Content consistency and motion of a moving-digits MoCoGAN checkpoint (configs/video/mocogan_digits.yaml):
    of ``--clips`` EMA clips (seeds 0 …), the share whose frames the packaged digits classifier gives one label
    (a crop of ``--crop`` px around each frame's centre of mass), the mean frame-to-frame displacement of the
    centre of mass against the data's, and the frame FID (digits-classifier features) against the held-out clips;
    the same for held-out real clips (the floor of each measure).

        OMP_NUM_THREADS=1 python -m bench video_digits lightning_logs/version_0/checkpoints/last.ckpt
    """
    model = VideoGAN.load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
    g = model.generator_ema
    dm = MovingDigitsDataModule(frames=g.frames, image_size=g.image_shape[-1], num_clips=args.data_clips,
                                digit_size=args.crop, batch_size=args.clips, seed=0)  # fmt: skip
    dm.setup("fit")
    held_out = to_unit(torch.cat([x for x, _ in dm.val_dataloader()]))[: args.clips]
    train = to_unit(torch.cat([x for x, _ in dm.train_dataloader()]))[: args.clips]
    fake = model.sample_video(args.clips, seed=0)
    rows = [_row(f"VideoGAN EMA, {model.batches} batches", fake, held_out, args.crop),
            _row("real training clips", train, held_out, args.crop)]  # fmt: skip
    if args.frames_long:
        long = model.sample_video(args.clips, frames=args.frames_long, seed=0)
        rows.append(_row(f"VideoGAN EMA, {args.frames_long} frames", long, held_out, args.crop))
    if args.picture:
        save_strips(model, held_out, Path(args.picture))
    ratio = rows[0]["displacement px/frame"] / max(rows[1]["displacement px/frame"], 1e-6)
    return {"rows": rows, "summary": {"displacement ratio (generated / real)": round(ratio, 3),
                                      "checkpoint": str(Path(args.checkpoint))}}  # fmt: skip


def video_digits_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint", help="a VideoGAN checkpoint of configs/video/mocogan_digits.yaml (last.ckpt)"
    )
    p.add_argument("--clips", type=int, default=100, help="generated clips (and real clips compared)")
    p.add_argument("--crop", type=int, default=16, help="the digit size: side of the classified crop")
    p.add_argument("--data_clips", type=int, default=1000, help="clips of the data (the config's num_clips)")
    p.add_argument("--frames_long", type=int, default=0, help="also measure clips this long (0: no)")
    p.add_argument(
        "--picture", default="", help="also save frame strips (real | generated | one content, new motions)"
    )
