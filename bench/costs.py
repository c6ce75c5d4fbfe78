"""What the framework's extras cost: FID/KID/IS in training, data loading, memory over a long run, profile shares."""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import MNIST_PNGS, ROOT, median


def fid_cost(args) -> dict:
    """What FID/KID/IS during training cost: time inside ``GenerativeMetrics`` as a share of a config's ``fit`` wall time.

    The config runs exactly as ``python -m aigc_lightning fit --config ...`` would (extra CLI arguments after ``--``),
    logging into a temporary folder. The callback times its own work (real-feature caching, generation, feature
    extraction, metric computation) with ``time.perf_counter``; the goal is < 5 % of the fit's wall time.

        python -m bench fid_cost                                   # configs/gan/dcgan_digits.yaml, as configured
        python -m bench fid_cost --config configs/vae/vae_digits.yaml -- --trainer.max_epochs 10
    """
    from aigc_lightning.callbacks import GenerativeMetrics
    from aigc_lightning.cli import AigcCLI

    with tempfile.TemporaryDirectory() as root:
        cli = AigcCLI(args=["--config", args.config, "--trainer.default_root_dir", root,
                            "--trainer.enable_progress_bar", "false", *args.cli_args], run=False)  # fmt: skip
        metrics = [c for c in cli.trainer.callbacks if isinstance(c, GenerativeMetrics)]
        if not metrics:
            sys.exit(f"{args.config} has no aigc_lightning.callbacks.GenerativeMetrics in trainer.callbacks")
        start = time.perf_counter()
        cli.trainer.fit(cli.model, cli.datamodule)
        wall = time.perf_counter() - start
        logged = {
            k: float(v)
            for k, v in cli.trainer.callback_metrics.items()
            if k in ("val/fid", "val/kid", "val/is")
        }
    m = metrics[0]
    row = {"config": args.config, "epochs": cli.trainer.current_epoch, "fit wall s": round(wall, 1),
           "metrics s": round(m.seconds, 1), "evaluations": m.evaluations, "num_samples": m.num_samples,
           "share": f"{100 * m.seconds / wall:.2f} %"}  # fmt: skip
    return {
        "rows": [row],
        "summary": {"FID/KID/IS share of fit wall time (goal < 5 %)": row["share"], **logged},
    }


def fid_cost_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/gan/dcgan_digits.yaml")
    p.add_argument("cli_args", nargs="*", help="extra `fit` arguments, after --")


def epoch_seconds(loader, epochs: int) -> float:
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, _ in loader:
            x.sum()  # touch the batch
        times.append(time.perf_counter() - start)
    return median(times)


def data_loading(args) -> dict:
    """Data loading: in-memory uint8 tensor (batched indexing) vs per-item PIL decoding, on real MNIST PNGs.

    Reference: torchvision's ``ImageFolder`` + transforms v2 + the default collate, what a plain-PyTorch script
    writes. Reports setup seconds, seconds per epoch (median of ``--epochs``), images/s and the speed-up, 1 thread.

        python -m bench data_loading [--root MNIST_PNGS] [--epochs 3]
    """
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision.transforms import v2

    from aigc_lightning.datamodules import ImageFolderDataModule

    torch.set_num_threads(1)
    start = time.perf_counter()
    transform = v2.Compose(
        [v2.Grayscale(), v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5], [0.5])]
    )
    reference = datasets.ImageFolder(args.root, transform=transform)
    loader = DataLoader(reference, batch_size=args.batch_size, shuffle=True)
    timings = [
        (
            "torchvision ImageFolder (reference)",
            time.perf_counter() - start,
            epoch_seconds(loader, args.epochs),
        )
    ]
    for name, limit in (("ImageFolderDataModule, per item", 0), ("ImageFolderDataModule, in memory", 10**9)):
        start = time.perf_counter()
        dm = ImageFolderDataModule(args.root, image_size=28, channels=1, batch_size=args.batch_size, val_fraction=0,
                                   in_memory_limit=limit)  # fmt: skip
        dm.setup("fit")
        timings.append((name, time.perf_counter() - start, epoch_seconds(dm.train_dataloader(), args.epochs)))
    n, ref = len(reference), timings[0][2]
    rows = [{"loader": name, "setup s": round(setup, 2), "epoch s": round(epoch, 3), "images/s": round(n / epoch),
             "speed-up": f"{ref / epoch:.1f}x"} for name, setup, epoch in timings]  # fmt: skip
    return {"rows": rows, "notes": [f"{n} images of {args.root}, batch {args.batch_size}, 1 thread"]}


def data_loading_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=MNIST_PNGS, help="a folder of images in class folders")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=128)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak(args) -> dict:
    """Soak: the digits GAN config for a fixed wall time with last.ckpt every N batches; RSS sampled throughout.

    Flat memory means RSS at the end within a few percent of RSS after warm-up (the first sample after the first
    checkpoint). RSS is the training process's resident set from /proc (Linux), sampled every ``--interval`` seconds.

        python -m bench soak --minutes 30 --every-n-batches 50
    """
    import torch

    root = Path(tempfile.mkdtemp(prefix="soak_"))
    limit = f"00:00:{int(args.minutes):02d}:{int(args.minutes % 1 * 60):02d}"
    cmd = [sys.executable, "-m", "aigc_lightning", "fit", "--config", "configs/gan/dcgan_digits.yaml",
           "--trainer.max_epochs", "100000", "--trainer.max_time", limit, "--trainer.enable_progress_bar", "false",
           "--trainer.default_root_dir", str(root), "--checkpoint.every_n_batches", str(args.every_n_batches)]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    samples: list[tuple[float, float]] = []
    warm: tuple[float, float] | None = None
    while proc.poll() is None:
        time.sleep(args.interval)
        if proc.poll() is not None:
            break
        samples.append((time.monotonic() - start, rss_mib(proc.pid)))
        if warm is None and last.exists():
            warm = samples[-1]  # the first sample after the first checkpoint write: imports and buffers done
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"soak run failed ({proc.returncode}):\n{err[-3000:]}")
    batches = (
        torch.load(last, weights_only=False, map_location="cpu")["global_step"] // 2
    )  # 2 optimizer steps a batch
    warm, end = warm or samples[0], samples[-1]
    points = (("first sample", samples[0]), ("warm (first ckpt)", warm), ("peak", (0, max(r for _, r in samples))),
              ("end", end))  # fmt: skip
    per_minute = " ".join(f"{r:.0f}" for _, r in samples[:: max(1, int(60 / args.interval))])
    return {"rows": [{"point": name, "time s": round(t), "RSS MiB": round(r, 1), "ratio to warm": round(r / warm[1], 3)}
                     for name, (t, r) in points],
            "summary": {"batches": batches, "batches/s": round(batches / (end[0] or 1), 1),
                        "RSS MiB, one sample per minute": per_minute, "run folder": str(root)}}  # fmt: skip


def soak_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--every-n-batches", type=int, default=50)
    p.add_argument("--interval", type=float, default=10.0)


# (stage, a string that marks it in a frame); the first match wins, so the outer stages come first
STAGES = [
    ("imports", "_find_and_load"),
    ("GAN training: D step (+ lazy R1)", "discriminator_step"),
    ("GAN training: G step (+ lazy path length)", "generator_step"),
    ("GAN training: EMA update", "update_ema"),
    ("image grids (ImageLogger)", "callbacks/images.py"),
    ("FID/KID/IS (GenerativeMetrics)", "callbacks/metrics.py"),
    ("validation_step", "validation_step"),
    ("training_step (the rest of it; automatic optimisation: forward + losses)", "training_step"),
    ("backward", "backward"),
    ("optimizer step", "optimizer_step"),
    ("data: photo crops read and resized", "PhotoCrops"),
    ("data: photo crops read and resized (plain script)", "crop (bench/baselines/style_network"),
    ("checkpoint saves", "checkpoint"),
    ("TensorBoard logger", "tensorboard"),
    ("progress bar", "progress"),
    ("config parsing (jsonargparse)", "jsonargparse"),
]


def profile_shares(args) -> dict:
    """Where a process's wall time went: a ``py-spy record --idle --format raw`` profile summed into coarse stages.

    Each main-thread sample is given to the first stage whose marker occurs in its stack (other threads — TensorBoard's
    writer, tqdm's monitor, the checkpoint writer — are skipped: they sleep while the main thread works); the rest is
    "other" (Lightning's loop and hooks, setup, the plain scripts' own loop). Seconds assume ``--rate`` samples/s.

        py-spy record --idle --threads --format raw --rate 50 -o fw.raw -- python -m aigc_lightning fit --config …
        python -m bench profile_shares fw.raw --rate 50
    """
    totals: collections.Counter[str] = collections.Counter()
    for line in Path(args.raw).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames[0].startswith("thread ") and "MainThread" not in frames[0]:
            continue  # --threads: keep the main thread only
        totals[next((name for name, marker in STAGES if any(marker in f for f in frames)), "other")] += int(
            count
        )
    n = sum(totals.values())
    rows = [
        {"stage": stage, "share": f"{100 * c / n:.1f} %", "s": round(c / args.rate, 1)}
        for stage, c in totals.most_common()
    ]
    return {"rows": rows, "summary": {"main thread in all, s": round(n / args.rate, 1)}}


def profile_shares_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("raw", help="py-spy's --format raw output")
    p.add_argument("--rate", type=float, default=100.0, help="py-spy's --rate (samples per second)")
