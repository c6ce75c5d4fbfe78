"""Evaluation throughput and memory: ``python -m aigc_lightning.evaluate`` on N generated against N real MNIST-sized
images (digits features), and the k-NN metrics alone at growing N, each in its own process (peak RSS)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import ROOT, run_process

MNIST_NPZ = ROOT.parent / "shared/data/mnist_t10k.npz"

KNN_SCRIPT = """
import sys, torch
torch.set_num_threads(int(sys.argv[3]))
from aigc_lightning.evaluation.metrics import manifold_metrics
n, d, chunk = int(sys.argv[1]), 64, int(sys.argv[2])
g = torch.Generator().manual_seed(0)
real, fake = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g) + 0.1
manifold_metrics(real, fake, chunk=chunk)
"""


def write_sets(folder: Path, n: int) -> tuple[Path, Path]:
    """``n`` MNIST test digits as the real set and ``n`` altered copies (shifted one pixel, Gaussian noise) as the
    generated set, as 28-px PNGs."""
    from PIL import Image

    images = np.load(MNIST_NPZ)["images"][:n]  # (n, 28, 28) uint8
    rng = np.random.default_rng(0)
    real, fake = folder / "real", folder / "fake"
    real.mkdir(parents=True)
    fake.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img.astype(np.uint8)).save(real / f"{i:05d}.png")
        altered = np.clip(np.roll(img, 1, axis=1) + rng.normal(0, 20, img.shape), 0, 255)
        Image.fromarray(altered.astype(np.uint8)).save(fake / f"{i:05d}.png")
    return real, fake


def evaluation(args) -> dict:
    """Wall time and peak memory of a whole evaluation and of the k-NN metrics alone, at several N."""
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            real, fake = write_sets(Path(tmp) / str(n), n)
            cmd = [sys.executable, "-m", "aigc_lightning.evaluate", "--generated", str(fake), "--reference", str(real),
                   "--device", args.device, "--out", str(Path(tmp) / f"{n}.json")]  # fmt: skip
            whole = run_process(cmd, env=env)
            knn = run_process(
                [sys.executable, "-c", KNN_SCRIPT, str(n), str(args.chunk), str(args.threads)], env=env
            )
            rows.append({
                "N (each side)": n,
                "evaluate wall s": round(whole["wall"], 1),
                "evaluate CPU s": round(whole["cpu"], 1),
                "evaluate peak RSS MiB": round(whole["rss"]),
                "k-NN metrics peak RSS MiB": round(knn["rss"]),
                "full N x N float32 matrix MiB": round(n * n * 4 / 2**20),
            })  # fmt: skip
    return {
        "rows": rows,
        "notes": [
            (
                f"digits features, {args.device}, {args.threads} thread(s), chunk {args.chunk}; real = MNIST test digits, "
                "generated = the same digits shifted 1 px with noise (28 px PNGs); the evaluate column includes start-up, "
                "PNG decoding, hashing, all seven metrics and their intervals (20 FID bootstrap resamples)"
            )
        ],
    }


def evaluation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, nargs="+", default=[2500, 5000, 10000], help="images on each side")
    p.add_argument("--chunk", type=int, default=2048, help="k-NN block size")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)


def evaluation_reference(args) -> dict:
    """Reference points of the card on real data: MNIST test digits, even-numbered files against odd-numbered ones
    (a perfect generator), and against only the odd files of digits 0-4 (half the classes dropped)."""
    import json

    root = Path(args.root)
    files = sorted(root.rglob("*.png"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = {name: Path(tmp) / name for name in ("even", "odd", "odd_0-4")}
        for folder in sets.values():
            folder.mkdir()
        for i, f in enumerate(files):
            name = f"{f.parent.name}_{f.name}"
            if i % 2 == 0:
                (sets["even"] / name).symlink_to(f)
            else:
                (sets["odd"] / name).symlink_to(f)
                if int(f.parent.name) < 5:
                    (sets["odd_0-4"] / name).symlink_to(f)
        for generated in ("odd", "odd_0-4"):
            out = Path(tmp) / f"{generated}.json"
            cmd = [sys.executable, "-m", "aigc_lightning.evaluate", "--generated", str(sets[generated]),
                   "--reference", str(sets["even"]), "--device", args.device, "--out", str(out)]  # fmt: skip
            run_process(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
            card = json.loads(out.read_text())
            row = {"generated": f"{generated} ({card['generated']['num_images']})"}
            for name, entry in card["metrics"].items():
                lo, hi = entry["ci95"] or (float("nan"), float("nan"))
                row[name] = f"{entry['value']:.3g} [{lo:.3g}, {hi:.3g}]"
            rows.append(row)
    note = f"reference: the {len(files[::2])} even-numbered of {len(files)} MNIST test PNGs; digits features"
    return {"rows": rows, "notes": [note + ", clean resize (28 -> 32 px); value [95% interval]"]}


def evaluation_reference_args(p: argparse.ArgumentParser) -> None:
    from bench.common import MNIST_PNGS

    p.add_argument("--root", default=MNIST_PNGS, help="MNIST test PNGs in class folders")
    p.add_argument("--device", default="cpu")
