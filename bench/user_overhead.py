"""What a user pays for a whole command: ``fit`` against a plain script, start-up, exit, and each convenience."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch

from bench.baselines.vae import digits_loop
from bench.common import ROOT, load_average, median, run_process


class Job(NamedTuple):
    """One comparison. Arguments may name the shared inputs as ``{photos}`` (a folder of photos) and ``{style}``."""

    config: str
    script: str  # the plain script, a module of bench.baselines
    epochs: int  # the config's max_epochs (the plain script's default)
    framework_args: tuple[str, ...] = ()  # what the config leaves to the command line
    plain_args: tuple[str, ...] = ()  # the same inputs for the plain script


STYLE_INPUTS = ("--data.content", "{photos}", "--data.style", "{style}")
JOBS = {
    "gan": Job("configs/gan/dcgan_digits.yaml", "dcgan", 40),
    "vae": Job("configs/vae/vae_digits.yaml", "vae", 60),
    "sg2": Job("configs/gan/stylegan2_digits.yaml", "stylegan2", 30),
    "stylenet": Job("configs/style/fast_offline.yaml", "style_network", 30, STYLE_INPUTS,
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


def startup_breakdown(repeats: int) -> list[dict]:
    """CPU seconds of each start-up stage of ``--help`` (median over ``repeats`` fresh processes)."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True, check=True)
        runs.append(dict(item.split("=") for item in out.stdout.strip().splitlines()[-1].split(";")))
    return [{"stage": name, "CPU s (median)": median(float(r[name]) for r in runs)} for name in runs[0]]


def commands(job: str, epochs: int | None, workdir: Path) -> tuple[list[str], list[str]]:
    """The framework's and the plain script's command lines for ``job``; writes the inputs they name."""
    spec = JOBS[job]
    needs = " ".join(spec.framework_args + spec.plain_args)
    inputs = write_inputs(workdir) if "{photos}" in needs or "{style}" in needs else {}
    framework = [sys.executable, "-m", "aigc_lightning", "fit", "--config", str(ROOT / spec.config),
                 "--trainer.default_root_dir", str(workdir / f"{job}_runs"),
                 *(a.format(**inputs) for a in spec.framework_args)]  # fmt: skip
    plain = [sys.executable, "-m", f"bench.baselines.{spec.script}", "--out", str(workdir / f"{job}_plain.pt"),
             *(a.format(**inputs) for a in spec.plain_args)]  # fmt: skip
    if epochs is not None and epochs != spec.epochs:
        framework += ["--trainer.max_epochs", str(epochs)]
        plain += ["--epochs", str(epochs)]
    return framework, plain


def pair_rows(job: str, pairs: list[tuple[dict, dict]], bare: list[dict]) -> tuple[list[dict], dict]:
    rows = [{"job": job, "pair": i, "fw wall s": f["wall"], "plain wall s": p["wall"], "wall ratio": f["wall"] / p["wall"],
             "fw CPU s": f["cpu"], "plain CPU s": p["cpu"], "CPU ratio": f["cpu"] / p["cpu"], "fw MiB": f["rss"],
             "plain MiB": p["rss"]} for i, (f, p) in enumerate(pairs)]  # fmt: skip
    summary = {f"{job} framework/plain {label} ratio (median)": median(f[key] / p[key] for f, p in pairs)
               for key, label in (("wall", "wall"), ("cpu", "CPU"), ("rss", "peak memory"))}  # fmt: skip
    for key, label in (("wall", "wall"), ("cpu", "CPU")) if bare else ():
        ratio = median(b[key] / p[key] for b, (_, p) in zip(bare, pairs))
        summary[f"{job} bare framework (conveniences off)/plain {label} ratio (median)"] = ratio
    return rows, summary


def user_overhead(args) -> dict:
    """What a user pays: the whole ``python -m aigc_lightning fit`` command against a plain script of the same training.

    Whole processes, timed in turn (framework then plain, then plain then framework, …): wall time, CPU time (user +
    system of the child) and peak resident memory per pair; the summary is the median of the per-pair ratios. The
    framework runs with every default on (TensorBoard scalars and grids, FID/KID/IS, checkpoints, progress bar); the
    plain scripts (``bench/baselines/``: dcgan, vae, stylegan2, style_network) train the same networks on the same data
    for the same batches and save once. The style network's photos and style image are scikit-image samples written
    to a temporary folder, the same files for both sides. Also ``python -m aigc_lightning --help`` against ``import
    torch, torchvision`` (start-up), split into its stages (CPU seconds). ``--bare`` adds a third process per pair:
    the same ``fit`` with validation, logger, checkpoints, grids and progress bar off (framework − bare: what the
    conveniences cost; bare − plain: Lightning's loop and start-up). Run it on a quiet machine.

        python -m bench user_overhead                        # GAN main job + VAE digits, 3 pairs each, + --help
        python -m bench user_overhead --jobs sg2,stylenet --epochs 2 --pairs 1 --help_repeats 0
        python -m bench user_overhead --jobs vae --plain_args "--fused --uniform_binarize"  # plain with our kernels
        python -m bench user_overhead --jobs ''             # only --help against import torch, torchvision
    """
    threads = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    print(f"torch threads (both sides): {threads}; load average before: {load_average()}", flush=True)
    rows, summary = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for job in filter(None, args.jobs.split(",")):
            framework, plain = commands(job, args.epochs, workdir)
            plain += args.plain_args.split()
            pairs, bare = [], []
            for i in range(args.pairs):
                first, second = (framework, plain) if i % 2 == 0 else (plain, framework)
                a, b = run_process(first), run_process(second)
                pairs.append((a, b) if i % 2 == 0 else (b, a))
                print(f"{job} pair {i}: framework {pairs[-1][0]['wall']:.1f} s, plain {pairs[-1][1]['wall']:.1f} s",
                      flush=True)  # fmt: skip
                if args.bare:
                    bare.append(run_process(framework + BARE))
            job_rows, job_summary = pair_rows(job, pairs, bare)
            rows += job_rows
            summary.update(job_summary)
            print(f"load average after {job}: {load_average()}", flush=True)
    result = {"rows": rows, "summary": summary}
    if args.help_repeats:
        cli = median(run_process([sys.executable, "-m", "aigc_lightning", "--help"])["wall"]
                     for _ in range(args.help_repeats))  # fmt: skip
        imports = median(run_process([sys.executable, "-c", "import torch, torchvision"])["wall"]
                         for _ in range(args.help_repeats))  # fmt: skip
        summary.update(
            {"--help s": cli, "import torch + torchvision s": imports, "start-up overhead s": cli - imports}
        )
        result["start-up stages"] = startup_breakdown(args.help_repeats)
    return result


def user_overhead_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", default="gan,vae", help=f"comma-separated: {', '.join(JOBS)}")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None, help="override both sides' epochs (quick checks)")
    p.add_argument("--help_repeats", type=int, default=3, help="timings of --help vs import (0: skip)")
    p.add_argument("--bare", action="store_true", help="also time the framework with every convenience off")
    p.add_argument("--plain_args", default="", help='extra options of the plain scripts, e.g. "--fused"')


CHILD = """
import gc, os, sys, time, atexit
from aigc_lightning.cli import main
mode, root, epochs = sys.argv[1], sys.argv[2], sys.argv[3]
main(["fit", "--config", "configs/vae/vae_digits.yaml", "--trainer.default_root_dir", root,
      "--trainer.max_epochs", epochs, "--trainer.enable_progress_bar", "false"])
if mode == "probe":
    start = time.perf_counter(); atexit._run_exitfuncs(); handlers = time.perf_counter() - start
    start = time.perf_counter(); gc.collect(); collect = time.perf_counter() - start
    print(f"PROBE {handlers:.4f} {collect:.4f} {len(gc.get_objects())}", flush=True)
    os._exit(0)
if mode == "freeze":
    gc.freeze()
print(f"END {time.time():.6f}", flush=True)
if mode == "os._exit":
    os._exit(0)
"""


def child(mode: str, epochs: int) -> tuple[str, float]:
    """Run ``CHILD`` in ``mode``; its output and when the process had ended."""
    with tempfile.TemporaryDirectory() as root:
        out = subprocess.run([sys.executable, "-c", CHILD, mode, root, str(epochs)], cwd=ROOT, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout  # fmt: skip
        return out, time.time()


def exit_time(args) -> dict:
    """How long a command's process takes to *exit* after its work is done, and what ``gc.freeze()`` changes.

    A short VAE digits ``fit`` through ``aigc_lightning.cli.main`` in a fresh process per mode, which prints a
    timestamp when ``main`` returns; the parent notes when the process has ended. Modes (taking turns): ``normal``
    (plain interpreter exit), ``freeze`` (``gc.freeze()`` first, as the entry point ``cli.run`` does), ``os._exit``
    (no finalisation: the floor, not something to ship). A separate process measures the atexit handlers, one full
    ``gc.collect()`` and the number of objects the collector tracks.

        OMP_NUM_THREADS=1 python -m bench exit_time --repeats 3
    """
    times: dict[str, list[float]] = {"normal": [], "freeze": [], "os._exit": []}
    for _ in range(args.repeats):
        for mode, values in times.items():
            out, ended = child(mode, args.epochs)
            values.append(ended - float(next(l.split()[1] for l in out.splitlines() if l.startswith("END "))))
    out, _ = child("probe", args.epochs)
    handlers, collect, objects = next(
        line.split()[1:] for line in out.splitlines() if line.startswith("PROBE")
    )
    rows = [{"exit after `main` returns": mode, "seconds (median)": median(v), "runs": ", ".join(f"{x:.2f}" for x in v)}
            for mode, v in times.items()]  # fmt: skip
    summary = {"atexit handlers s": float(handlers), "one full gc.collect() s": float(collect),
               "tracked objects": int(objects)}  # fmt: skip
    return {"rows": rows, "summary": summary}


def exit_time_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)


BEFORE = ["--trainer.log_every_n_steps", "10", "--trainer.check_val_every_n_epoch", "5",
          "--images.log_images_every_n_batches", "125", "--model.optimizer.init_args.fused", "false",
          "--trainer.callbacks", '[{"class_path": "lightning.pytorch.callbacks.TQDMProgressBar"}]']  # fmt: skip
VARIANTS = {
    "as shipped": [], "before": BEFORE, "no validation": ["--trainer.limit_val_batches", "0"],
    "no grids": ["--images.log_images_every_n_batches", "0"], "no logger": ["--trainer.logger", "false"],
    "no progress bar": ["--trainer.enable_progress_bar", "false"], "bare": BARE,
}  # fmt: skip


def fit_seconds(extra: list[str], epochs: int, before: bool) -> float:
    """Main-thread CPU seconds of ``Trainer.fit`` of configs/vae/vae_digits.yaml with ``extra`` overrides."""
    from aigc_lightning.cli import AigcCLI
    from aigc_lightning.datamodules import datasets

    binarized = datasets.binarized
    if before:  # the kernels and the NVML probe of before the cuts
        datasets.binarized = lambda x01, generator=None: torch.bernoulli(x01, generator=generator)
    try:
        cli = AigcCLI(args=["--config", str(ROOT / "configs/vae/vae_digits.yaml"), "--trainer.default_root_dir",
                            tempfile.mkdtemp(), "--trainer.max_epochs", str(epochs), *extra], run=False)  # fmt: skip
        if before:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = (
                "1"  # AigcCLI switched it off on a driverless machine
            )
        start = time.thread_time()
        cli.trainer.fit(cli.model, cli.datamodule)
        return time.thread_time() - start
    finally:
        datasets.binarized = binarized
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)


def vae_ablation(args) -> dict:
    """Where the VAE digits job's extra time goes: ``fit`` in this process, one convenience off at a time.

    Times only ``Trainer.fit`` (and the plain loop's training, ``bench.baselines.vae`` without warm-up and schedule)
    in one process, as main-thread CPU time (``time.thread_time``: not inflated by other processes), the variants
    taking turns, median of ``--repeats``: ``plain``; ``as shipped`` (configs/vae/vae_digits.yaml); ``before`` (the
    config and kernels before the overhead cuts: ``torch.bernoulli``, the NVML probe on every optimizer step,
    Lightning's per-batch progress bar, scalars every 10 batches, validation every 5th epoch, grids every 125
    batches, unfused Adam); ``no validation``, ``no grids``, ``no logger``, ``no progress bar``; ``bare`` (all off).

        OMP_NUM_THREADS=1 python -m bench vae_ablation --epochs 30 --repeats 3
    """
    torch.set_num_threads(1)
    times: dict[str, list[float]] = {"plain": [], **{name: [] for name in VARIANTS}}
    for _ in range(args.repeats):
        times["plain"].append(digits_loop(args.epochs, schedule=False)[3])
        for name, extra in VARIANTS.items():
            times[name].append(fit_seconds(extra, args.epochs, before=name == "before"))
        print(" ".join(f"{name}={t[-1]:.2f}" for name, t in times.items()), flush=True)
    plain = median(times["plain"])
    return {
        "rows": [{"variant": k, "CPU s": median(t), "× plain": median(t) / plain} for k, t in times.items()]
    }


def vae_ablation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
