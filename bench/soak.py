"""Soak: the digits GAN config for a fixed wall time with last.ckpt every N batches; RSS sampled throughout.

    python bench/soak.py --minutes 30 --every-n-batches 50

Flat memory means RSS at the end within a few percent of RSS after warm-up (the first sample after the first
checkpoint). RSS is the training process's resident set from /proc (Linux), sampled every --interval seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every-n-batches", type=int, default=50)
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="soak_"))
    limit = f"00:00:{int(args.minutes):02d}:{int(args.minutes % 1 * 60):02d}"
    cmd = [
        sys.executable,
        "-m",
        "aigc_lightning",
        "fit",
        "--config",
        "configs/gan/dcgan_digits.yaml",
        "--trainer.max_epochs",
        "100000",
        "--trainer.max_time",
        limit,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(root),
        "--checkpoint.every_n_batches",
        str(args.every_n_batches),
    ]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
            print(f"first last.ckpt seen at {warm[0]:.0f} s", flush=True)
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"soak run failed ({proc.returncode}):\n{err[-3000:]}")
    ckpt = torch.load(last, weights_only=False, map_location="cpu")
    batches = ckpt["global_step"] // 2  # two optimizer steps per GAN batch
    warm = warm or samples[0]
    end = samples[-1]
    peak = max(r for _, r in samples)
    print(
        f"soak: {args.minutes:g} min, last.ckpt every {args.every_n_batches} batches, {batches} batches "
        f"({batches / (end[0] or 1):.1f}/s), {len(samples)} RSS samples, run folder {root}"
    )
    print(
        "RSS MiB, one sample per minute:",
        " ".join(f"{r:.0f}" for t, r in samples[:: max(1, int(60 / args.interval))]),
    )
    print("| point | time s | RSS MiB | ratio to warm |")
    print("|---|---|---|---|")
    for name, (t, r) in (
        ("first sample", samples[0]),
        ("warm (first ckpt)", warm),
        ("peak", (0, peak)),
        ("end", end),
    ):
        print(f"| {name} | {t:.0f} | {r:.1f} | {r / warm[1]:.3f} |")


if __name__ == "__main__":
    main()
