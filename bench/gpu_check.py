"""Each model config trained for N batches in each precision, DDP over all GPUs: img/s, memory, finiteness."""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

if (
    not __package__
):  # run as a script (python bench/gpu_check.py): the repository root holds the bench package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import ROOT

JOBS = {
    "gan": ROOT / "configs/gan/dcgan_digits.yaml",
    "vae": ROOT / "configs/vae/vae_digits.yaml",
    "stylegan2": ROOT / "configs/gan/stylegan2_digits.yaml",
    "dcgan64": ROOT / "configs/gan/dcgan_celeba64.yaml",
    "stylegan2_256": ROOT / "configs/gan/stylegan2_ffhq256.yaml",
    "gatys512": ROOT / "configs/style/gatys_offline.yaml",
}
# Jobs at real sizes read generated images ({images64}, {images256}, {content}, {style}: written by
# ``synthetic_inputs``); DCGAN 64 px reads them through the prepared dataset cache. Gatys: one loss evaluation per
# step (max_iter 1), so its img/s is evaluations/s of a 512-px image.
DATA = {
    "dcgan64": "--data aigc_lightning.datamodules.ImageFolderDataModule --data.root {images64} --data.image_size 64 "
    "--data.channels 3 --data.batch_size 128 --data.cache_dir {cache}",
    "stylegan2_256": "--data.root {images256} --data.cache_dir {cache}",
    "gatys512": "--data.content {content} --data.style {style} --data.image_size 512 "
    "--model.optimizer.init_args.max_iter 1",
}
# ``--cpu`` (CI-sized): the same code paths with narrow nets and small images, a few seconds a run
PLAIN_DCGAN = ("gan", "dcgan64")  # jobs with a plain-PyTorch row (plain_img_per_s) in the same run
CPU_SIZED = {
    "dcgan64": "--model.generator.init_args.width 4 --model.discriminator.init_args.width 4 --data.batch_size 8",
    "stylegan2_256": "--data.image_size 16 --data.batch_size 4 --model.generator.init_args.channel_max 8 "
    "--model.discriminator.init_args.channel_max 8 --model.generator.init_args.latent_dim 16 "
    "--model.generator.init_args.n_mlp 2 --model.discriminator.init_args.mbstd_group_size 4",
    "gatys512": "--data.image_size 32",
}
CPU_PRECISIONS = ("32-true", "bf16-mixed")  # on a CPU Lightning turns 16-mixed into bf16-mixed


class Probe(Callback):
    """Counts batches, times the ones after ``warmup``, watches logged values, stops after ``batches``."""

    def __init__(self, batches: int, warmup: int) -> None:
        self.batches, self.warmup = batches, warmup
        self.done, self.images, self.start, self.seconds, self.finite = 0, 0, None, 0.0, True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.done += 1
        if self.done == self.warmup:
            sync(pl_module.device)
            self.start = time.perf_counter()
        elif self.done > self.warmup:
            self.images += batch[0].shape[0] * trainer.world_size
        for name, value in trainer.callback_metrics.items():
            if name.startswith("train/") and not bool(torch.isfinite(value).all()):
                self.finite = False
        if self.done >= self.batches:
            sync(pl_module.device)
            if self.start is not None:
                self.seconds = time.perf_counter() - self.start
            trainer.should_stop = True


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parameter_vector(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in module.parameters()])


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def train_once(spec: dict) -> dict | None:
    """One run of ``spec`` (job, precision, options); returns the row on global rank 0, ``None`` on other ranks."""
    from aigc_lightning.cli import AigcCLI  # imported here: ``--help`` stays fast

    probe = Probe(spec["batches"], spec["warmup"])
    devices = spec["devices"]
    args = [
        "--config", str(JOBS[spec["job"]]),
        "--trainer.accelerator", spec["accelerator"], "--trainer.devices", str(devices),
        "--trainer.strategy", "ddp" if devices > 1 else "auto",
        "--trainer.precision", spec["precision"],
        "--trainer.max_epochs", "-1", "--trainer.limit_val_batches", "0", "--trainer.callbacks", "[]",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", spec["folder"],
        "--images.log_images_every_n_batches", "0", "--checkpoint.save_last", "false",
        *spec["extra"],
    ]  # fmt: skip
    cli = AigcCLI(args=args, run=False)
    cli.trainer.callbacks.append(probe)
    model = cli.model
    if spec["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    if spec["compile"]:
        for child in model.children():
            if any(True for _ in child.parameters()):
                child.compile()
    device = cli.trainer.strategy.root_device
    fresh = copy.deepcopy((model.generator, model.discriminator)) if spec["job"] in PLAIN_DCGAN else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    error = None
    try:
        cli.trainer.fit(model, cli.datamodule)
    except Exception as exc:  # a non-finite loss (NonFiniteLossError) or a precision the kernels lack
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if cli.trainer.world_size > 1:
            raise  # the other ranks would wait forever in the next collective
    params = parameter_vector(model).to(device)
    finite = probe.finite and error is None and bool(torch.isfinite(params).all())
    memory = torch.tensor([peak_memory_mib(device)], device=device)
    if cli.trainer.world_size > 1:
        gathered = cli.trainer.strategy.all_gather(params)  # (world, P)
        rank_diff = (gathered - gathered[0]).abs().max().item()
        memory = cli.trainer.strategy.all_gather(memory).max()
    else:
        rank_diff = 0.0
    if cli.trainer.global_rank != 0:
        return None
    plain = None
    if fresh is not None and cli.trainer.world_size == 1:
        plain = plain_dcgan(*fresh, cli.datamodule.batch_size, device, spec)
    return {
        "job": spec["job"], "precision": spec["precision"], "options": spec["label"],
        "ranks": cli.trainer.world_size, "batches": probe.done,
        "img_per_s": probe.images / probe.seconds if probe.seconds > 0 else float("nan"),
        "plain_img_per_s": plain, "peak_mib": float(memory.max()), "finite": finite, "rank_max_abs_diff": rank_diff, "error": error,
    }  # fmt: skip


def plain_dcgan(g, d, batch_size: int, device: torch.device, spec: dict) -> float:
    """Images/s of the plain-PyTorch DCGAN step (``bench.baselines.dcgan.gan_step``: D step, G step, EMA) on fresh
    copies of the job's nets, under ``torch.autocast`` for the mixed precisions (16-mixed without a GradScaler:
    a speed reference, not a recipe), the same batches and warm-up as the framework run."""
    from bench.baselines.dcgan import adam_pair, gan_step

    g, d = g.to(device), d.to(device)
    g_ema, (opt_g, opt_d) = copy.deepcopy(g), adam_pair(g, d)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(spec["precision"])
    real = torch.rand(batch_size, *g.image_shape, device=device) * 2 - 1
    start = 0.0
    for batch in range(spec["batches"]):
        if batch == spec["warmup"]:
            sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype or torch.float32, enabled=dtype is not None):
            gan_step(g, d, g_ema, opt_g, opt_d, real, batch, 0.999)
    sync(device)
    return (spec["batches"] - spec["warmup"]) * batch_size / (time.perf_counter() - start)


def synthetic_inputs(folder: Path, small: bool) -> dict[str, str]:
    """Random-noise images for the jobs at real sizes: 64 px and 256 px folders, a content and a style image."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = {"cache": str(folder / "cache")}
    for name, size, count in (
        ("images64", 64, 64 if small else 1024),
        ("images256", 32 if small else 256, 64),
    ):
        (folder / name).mkdir()
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                folder / name / f"{i}.png"
            )
        paths[name] = str(folder / name)
    for name in ("content", "style"):
        side = 32 if small else 512
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{name}.png")
        paths[name] = str(folder / f"{name}.png")
    return paths


def job_options(job: str, cpu: bool, inputs: dict[str, str]) -> list[str]:
    """The job's data options (its generated inputs) and, with ``--cpu``, its CI-sized shrink options."""
    return (DATA.get(job, "").format(**inputs) + " " + (CPU_SIZED.get(job, "") if cpu else "")).split()


def run_spec(spec: dict) -> dict:
    """In this process for one device; otherwise a ``--worker`` process that Lightning's launcher fans out."""
    if spec["devices"] == 1:
        return train_once(spec)
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        command = [
            sys.executable,
            "-m",
            "bench",
            "gpu_check",
            "--worker",
            json.dumps(spec),
            "--worker_out",
            out.name,
        ]
        done = subprocess.run(command, cwd=ROOT, check=False, capture_output=True, text=True)
        text = Path(out.name).read_text()
        if done.returncode != 0 or not text:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return {**spec, "options": spec["label"], "error": f"exit {done.returncode}: {tail[0]}"}
        return json.loads(text)


def gpu_check(args) -> dict | None:
    """One-command accelerator check: each model config trained for N batches in each precision, DDP over all GPUs.

        python -m bench gpu_check [--batches 50] [--warmup 10] [--precisions 32-true bf16-mixed 16-mixed]
            [--jobs gan vae stylegan2] [--channels_last] [--compile] [--devices N] [--cpu] [--set "CLI OVERRIDES"] [--json OUT.json]

    Jobs (offline data, nothing downloaded): ``gan`` = configs/gan/dcgan_digits.yaml, ``vae`` =
    configs/vae/vae_digits.yaml, ``stylegan2`` = configs/gan/stylegan2_digits.yaml (skipped with a note while that file
    is absent). Every run is the config as shipped through the project's CLI parser, with its metric/checkpoint
    callbacks, image grids and logger off, stopped after ``--batches`` training batches.

    On CUDA all visible GPUs train together under ``ddp`` (``--devices`` to choose fewer); each run is then its own
    ``python bench/gpu_check.py --worker …`` process, so Lightning's launcher can start the other ranks and every run
    starts with clean memory and compile caches. With one device the run happens in this process.

    Per run it prints: images per second over all ranks after ``--warmup`` batches (compilation and allocator
    warm-up excluded), peak memory (CUDA: the largest ``max_memory_allocated`` over ranks; CPU: the process's peak
    RSS so far), whether every logged training value and every weight stayed finite (a non-finite loss stops the run
    with the module's own error), and whether the ranks end with identical weights (the largest absolute difference
    of any parameter between rank 0 and any other rank; 0 means DDP kept them in step).

    ``--channels_last`` and ``--compile`` add measured rows (the model moved to ``torch.channels_last``; its networks
    compiled with ``nn.Module.compile``) next to the plain row of every job and precision.

    ``--cpu``: the same on the CPU, one process unless ``--devices N`` (then ``ddp`` over N processes, gloo). The CPU
    runs ``32-true`` and ``bf16-mixed``; ``16-mixed`` is skipped there (on a CPU Lightning runs it as ``bf16-mixed``).
    """
    if args.worker:  # one run, on every rank; rank 0 writes its row
        row = train_once(json.loads(args.worker))
        if row is not None:
            Path(args.worker_out).write_text(json.dumps(row))
        return None
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("error: no CUDA device is visible; run with --cpu to check the CPU path")
    accelerator = "cpu" if args.cpu else "cuda"
    devices = args.devices or (1 if args.cpu else torch.cuda.device_count())
    if args.batches <= args.warmup:
        sys.exit(f"error: --batches {args.batches} must exceed --warmup {args.warmup} to time anything")
    variants = [("plain", False, False)]
    variants += [("channels_last", True, False)] if args.channels_last else []
    variants += [("compile", False, True)] if args.compile else []
    notes, rows = [], []
    with tempfile.TemporaryDirectory() as folder:
        inputs = synthetic_inputs(Path(folder), small=args.cpu)
        for job in args.jobs:
            if not JOBS[job].exists():
                notes.append(f"{job}: skipped, {JOBS[job].relative_to(ROOT)} does not exist in this checkout")
                continue
            for precision in args.precisions:
                if args.cpu and precision not in CPU_PRECISIONS:
                    notes.append(f"{job} {precision}: skipped on CPU (Lightning runs it as bf16-mixed there)")
                    continue
                for label, channels_last, compile_ in variants:
                    spec = {
                        "job": job, "precision": precision, "label": label, "channels_last": channels_last,
                        "compile": compile_, "batches": args.batches, "warmup": args.warmup,
                        "accelerator": accelerator, "devices": devices, "folder": folder,
                        "extra": job_options(job, args.cpu, inputs) + args.set.split(),
                    }  # fmt: skip
                    rows.append(run_spec(spec))
                    print(rows[-1], flush=True)
    device = "CPU" if args.cpu else torch.cuda.get_device_name(0)
    notes.insert(
        0, f"{device}, {devices} device(s), {args.batches} batches per run ({args.warmup} untimed warm-up)"
    )
    return {"rows": rows, "notes": notes}  # rank_max_abs_diff 0: the ranks ended with identical weights


def gpu_check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batches", type=int, default=50, help="training batches per run")
    p.add_argument("--warmup", type=int, default=10, help="batches left out of the img/s timing")
    p.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed", "16-mixed"])
    p.add_argument(
        "--jobs", nargs="+", default=["dcgan64", "stylegan2_256", "vae", "gatys512"], choices=list(JOBS)
    )
    p.add_argument("--channels_last", action="store_true", help="add channels_last rows")
    p.add_argument("--compile", action="store_true", help="add torch.compile rows")
    p.add_argument("--devices", type=int, default=None, help="default: all visible GPUs (1 on --cpu)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU (32-true and bf16-mixed)")
    p.add_argument(
        "--set", default="", metavar="ARGS", help='CLI overrides for every run: "--data.batch_size 256"'
    )
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker_out", default=None, help=argparse.SUPPRESS)


if (
    __name__ == "__main__"
):  # ``python bench/gpu_check.py [options]`` = ``python -m bench gpu_check [options]``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.__main__ import main

    main(["gpu_check", *sys.argv[1:]])
