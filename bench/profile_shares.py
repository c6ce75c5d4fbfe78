"""Where a process's wall time went: a ``py-spy record --idle --format raw`` profile summed into coarse stages.

Each main-thread sample is given to the first stage whose marker occurs in its stack (other threads — TensorBoard's
writer, tqdm's monitor, the checkpoint writer — are skipped: they sleep while the main thread works); the rest is
"other" (Lightning's loop and hooks, setup, the plain scripts' own loop). Seconds assume ``--rate`` samples per
second.

    py-spy record --idle --threads --format raw --rate 50 -o fw.raw -- python -m aigc_lightning fit --config …
    python bench/profile_shares.py fw.raw --rate 50
"""

from __future__ import annotations

import argparse
import collections

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
    ("data: photo crops read and resized (plain script)", "crop (plain_style_network"),
    ("checkpoint saves", "checkpoint"),
    ("TensorBoard logger", "tensorboard"),
    ("progress bar", "progress"),
    ("config parsing (jsonargparse)", "jsonargparse"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", help="py-spy's --format raw output")
    parser.add_argument("--rate", type=float, default=100.0, help="py-spy's --rate (samples per second)")
    args = parser.parse_args()
    totals: collections.Counter[str] = collections.Counter()
    with open(args.raw) as f:
        lines = f.read().splitlines()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames[0].startswith("thread ") and "MainThread" not in frames[0]:
            continue  # --threads: keep the main thread only
        stage = next((name for name, marker in STAGES if any(marker in f for f in frames)), "other")
        totals[stage] += int(count)
    n = sum(totals.values())
    for stage, count in totals.most_common():
        print(f"{100 * count / n:6.1f} %  {count / args.rate:7.1f} s  {stage}")
    print(f"{100:6.1f} %  {n / args.rate:7.1f} s  main thread in all")


if __name__ == "__main__":
    main()
