"""What a user pays: the whole ``python -m aigc_lightning fit`` command against a plain script of the same training.

Whole processes, timed in turn (framework then plain, then plain then framework, …, so drifting load hits both
sides alike): wall time, CPU time (user + system of the child) and peak resident memory, per pair; the summary is
the median of the per-pair ratios. The framework runs with every default on (TensorBoard scalars and grids,
FID/KID/IS, best-FID and last checkpoints, progress bar); the plain scripts (``bench/plain_dcgan_digits.py``,
``bench/plain_vae_digits.py``, ``bench/plain_stylegan2_digits.py``, ``bench/plain_style_network.py``) train the
same networks on the same data for the same batches and save once. The style network's photos and style image
are scikit-image samples written to a temporary folder, the same files for both sides. Also: ``python -m
aigc_lightning --help`` against ``import torch, torchvision`` (start-up cost).

    python bench/user_overhead.py                        # GAN main job + VAE digits, 3 pairs each, + --help
    python bench/user_overhead.py --jobs gan --pairs 5
    python bench/user_overhead.py --jobs sg2,stylenet --epochs 2 --pairs 1 --help_repeats 0   # the new models
    python bench/user_overhead.py --epochs 4             # quick check: 4 epochs on both sides
    python bench/user_overhead.py --bare                 # also the framework with every convenience off
    python bench/user_overhead.py --jobs vae --plain_args "--fused --uniform_binarize"  # plain with our kernels
    python bench/user_overhead.py --jobs vae --plain_args=--freeze_at_exit   # plain with cli.run's fast exit
    python bench/user_overhead.py --jobs ''             # only --help against import torch, torchvision

``--bare`` adds a third process per pair: the same ``fit`` with validation, logger, checkpoints, image grids and
progress bar off. framework - bare is what the conveniences cost; bare - plain is Lightning's loop and start-up.
The last section splits ``--help``'s start-up into the imports and the parser (CPU seconds, in one process).

Run it on a quiet machine: the ratio is what the issue's goal (≤ 1.10×) is about, and other processes inflate
whichever side they overlap.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


class Job(NamedTuple):
    """One comparison. Arguments may name the shared inputs as ``{photos}`` (a folder of photos) and ``{style}``."""

    config: str
    script: str  # the plain script, in bench/
    epochs: int  # the config's max_epochs (the plain script's default)
    framework_args: tuple[str, ...] = ()  # what the config leaves to the command line
    plain_args: tuple[str, ...] = ()  # the same inputs for the plain script


STYLE_INPUTS = ("--data.content", "{photos}", "--data.style", "{style}")
JOBS = {
    "gan": Job("configs/gan/dcgan_digits.yaml", "plain_dcgan_digits.py", 40),
    "vae": Job("configs/vae/vae_digits.yaml", "plain_vae_digits.py", 60),
    "sg2": Job("configs/gan/stylegan2_digits.yaml", "plain_stylegan2_digits.py", 30),
    "stylenet": Job("configs/style/fast_offline.yaml", "plain_style_network.py", 30, STYLE_INPUTS,
                    ("--content", "{photos}", "--style", "{style}")),
}  # fmt: skip
# scikit-image's bundled samples (no download): content photos and the style image of docs/style_network.md
PHOTOS, STYLE = ("astronaut", "coffee", "rocket", "chelsea"), "immunohistochemistry"


def write_inputs(workdir: Path) -> dict[str, Path]:
    """The photos and the style image as PNG files under ``workdir``: {"photos": folder, "style": file}."""
    from PIL import Image
    from skimage import data

    photos = workdir / "photos"
    photos.mkdir(exist_ok=True)
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).save(photos / f"{name}.png")
    style = workdir / "style.png"
    Image.fromarray(getattr(data, STYLE)()).save(style)
    return {"photos": photos, "style": style}


def timed(cmd: list[str], cwd: Path) -> dict[str, float]:
    """Run ``cmd`` to completion; wall seconds, CPU seconds (user + sys) and peak RSS (MiB) of that process."""
    env = dict(os.environ, PYTHONPATH=f"{BENCH}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def load() -> str:
    """The 1/5/15-minute load averages: over ~0 on an idle machine, other processes are inflating the times."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# every convenience off: what Lightning's loop + the CLI cost on their own
BARE = ["--trainer.limit_val_batches", "0", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.callbacks", "[]", "--images.log_images_every_n_batches",
        "0", "--checkpoint.save_last", "false", "--checkpoint.save_top_k", "0", "--checkpoint.every_n_batches", "0"]  # fmt: skip

STARTUP = """
import contextlib, io, sys, time
marks = [("start", time.process_time())]
def mark(name): marks.append((name, time.process_time()))
import torch; mark("torch")
import torchvision; mark("torchvision")
import aigc_lightning.compat; mark("torchmetrics + Lightning + jsonargparse")  # as cli.py: scipy.signal deferred
import aigc_lightning.cli as cli; mark("aigc_lightning.cli")
assert type(sys.modules["scipy.signal"]).__name__ == "_DeferredModule"
sys.argv = ["aigc_lightning", "--help"]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        cli.main()
    except SystemExit:
        pass
mark("--help: parsers")
print(";".join(f"{n}={b - a:.3f}" for (_, a), (n, b) in zip(marks, marks[1:])))
"""


def startup_breakdown(repeats: int) -> None:
    """CPU seconds of each start-up stage of ``--help`` (median over ``repeats`` fresh processes)."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True, check=True)
        runs.append(dict(item.split("=") for item in out.stdout.strip().splitlines()[-1].split(";")))
    print("start-up CPU seconds by stage (median):")
    for name in runs[0]:
        print(f"  {name:<42} {statistics.median(float(r[name]) for r in runs):6.2f}")


def commands(job: str, epochs: int | None, workdir: Path) -> tuple[list[str], list[str]]:
    """The framework's and the plain script's command lines for ``job``; writes the inputs they name."""
    spec = JOBS[job]
    needs = " ".join(spec.framework_args + spec.plain_args)
    inputs = write_inputs(workdir) if "{photos}" in needs or "{style}" in needs else {}
    framework = [sys.executable, "-m", "aigc_lightning", "fit", "--config", str(ROOT / spec.config),
                 "--trainer.default_root_dir", str(workdir / f"{job}_runs"),
                 *(a.format(**inputs) for a in spec.framework_args)]  # fmt: skip
    plain = [sys.executable, str(BENCH / spec.script), "--out", str(workdir / f"{job}_plain.pt"),
             *(a.format(**inputs) for a in spec.plain_args)]  # fmt: skip
    if epochs is not None and epochs != spec.epochs:
        framework += ["--trainer.max_epochs", str(epochs)]
        plain += ["--epochs", str(epochs)]
    return framework, plain


def report(name: str, pairs: list[tuple[dict, dict]], bare: list[dict]) -> None:
    print(f"\n{name}: framework vs plain, {len(pairs)} pairs")
    print(f"{'pair':>4} {'fw wall':>8} {'plain wall':>10} {'ratio':>6} {'fw cpu':>7} {'plain cpu':>9} {'ratio':>6}"
          f" {'fw MiB':>7} {'plain MiB':>9}")  # fmt: skip
    for i, (f, p) in enumerate(pairs):
        print(f"{i:>4} {f['wall']:8.1f} {p['wall']:10.1f} {f['wall'] / p['wall']:6.3f} {f['cpu']:7.1f} "
              f"{p['cpu']:9.1f} {f['cpu'] / p['cpu']:6.3f} {f['rss']:7.0f} {p['rss']:9.0f}")  # fmt: skip
    for key, label in (("wall", "wall"), ("cpu", "CPU"), ("rss", "peak memory")):
        ratio = statistics.median(f[key] / p[key] for f, p in pairs)
        print(f"{name} framework/plain {label} ratio (median): {ratio:.3f}")
    if bare:
        for key, label in (("wall", "wall"), ("cpu", "CPU")):
            ratio = statistics.median(b[key] / p[key] for b, (_, p) in zip(bare, pairs))
            print(f"{name} bare framework (conveniences off)/plain {label} ratio (median): {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="gan,vae", help=f"comma-separated: {', '.join(JOBS)}")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="override both sides' epochs (quick checks)")
    parser.add_argument("--help_repeats", type=int, default=3, help="timings of --help vs import (0: skip)")
    parser.add_argument("--bare", action="store_true", help="also time the framework with every convenience off")
    parser.add_argument("--plain_args", default="", help='extra options of the plain scripts, e.g. "--fused"')
    args = parser.parse_args()

    threads = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    print(f"torch intra-op threads (both sides): {threads}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
          f"load average before: {load()}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for job in filter(None, args.jobs.split(",")):
            framework, plain = commands(job, args.epochs, workdir)
            plain += args.plain_args.split()
            pairs, bare = [], []
            for i in range(args.pairs):
                if i % 2 == 0:
                    f, p = timed(framework, ROOT), timed(plain, ROOT)
                else:
                    p, f = timed(plain, ROOT), timed(framework, ROOT)
                pairs.append((f, p))
                print(f"{job} pair {i}: framework {f['wall']:.1f} s, plain {p['wall']:.1f} s", flush=True)
                if args.bare:
                    bare.append(timed(framework + BARE, ROOT))
                    print(f"{job} pair {i}: bare framework {bare[-1]['wall']:.1f} s", flush=True)
            report(job, pairs, bare)
            print(f"load average after {job}: {load()}", flush=True)
        if args.help_repeats:
            cli = [timed([sys.executable, "-m", "aigc_lightning", "--help"], ROOT)["wall"]
                   for _ in range(args.help_repeats)]  # fmt: skip
            imports = [timed([sys.executable, "-c", "import torch, torchvision"], ROOT)["wall"]
                       for _ in range(args.help_repeats)]  # fmt: skip
            cli_s, import_s = statistics.median(cli), statistics.median(imports)
            print(f"\n--help {cli_s:.2f} s, import torch + torchvision {import_s:.2f} s: "
                  f"start-up overhead {cli_s - import_s:.2f} s (goal <= 1.5 s)")  # fmt: skip
            startup_breakdown(args.help_repeats)


if __name__ == "__main__":
    main()
