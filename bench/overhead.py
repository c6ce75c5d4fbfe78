"""Training-loop speed in one process: the GAN module against a plain loop, under DDP, and StyleGAN2 against DCGAN."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

from aigc_lightning.gan_latents import StyleLatents
from aigc_lightning.gan_regularizers import R1, PathLength
from aigc_lightning.modules import GAN
from aigc_lightning.nets import Discriminator, Generator, StyleGAN2Discriminator, StyleGAN2Generator
from bench.baselines.dcgan import adam_pair, gan_step
from bench.common import ROOT, lightning_quiet, median


class BatchTimer(Callback):
    """Wall and CPU time from the start of batch ``warmup`` to the end of the last batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.count = warmup, 0
        self.start = self.end = self.cpu_start = self.cpu_end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self.end, self.cpu_end, self.count = time.perf_counter(), time.process_time(), self.count + 1

    def rates(self) -> tuple[float, float]:
        return self.count / (self.end - self.start), self.count / (self.cpu_end - self.cpu_start)


def random_loader(size: int, batch_size: int, batches: int, seed: int | None = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    x = torch.rand(batch_size * batches, 1, size, size, generator=g) * 2 - 1
    return DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=batch_size, drop_last=True)


def cpu_trainer(timer: Callback, devices: int = 1) -> Trainer:
    return Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
        num_sanity_val_steps=0,
    )  # fmt: skip


def dcgan_nets(args) -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    g = Generator(latent_dim=100, channels=1, image_size=args.image_size, width=args.width)
    return g, Discriminator(channels=1, image_size=args.image_size, width=args.width)


def plain(args) -> tuple[float, float]:
    """The reference: ``bench.baselines.dcgan.gan_step`` (what GAN.training_step does) and a read of both loss
    values (the framework's ``check_finite``). Returns (batches/s, batches/CPU-s)."""
    g, d = dcgan_nets(args)
    g_ema = Generator(latent_dim=100, channels=1, image_size=args.image_size, width=args.width)
    g_ema.load_state_dict(g.state_dict())
    g_ema.requires_grad_(False)
    opt_g, opt_d = adam_pair(g, d)
    start = cpu_start = end = cpu_end = 0.0
    for i, (real, _) in enumerate(
        random_loader(args.image_size, args.batch_size, args.warmup + args.batches)
    ):
        if i == args.warmup:
            start, cpu_start = time.perf_counter(), time.process_time()
        loss_d, loss_g = gan_step(g, d, g_ema, opt_g, opt_d, real, i, ema_decay=0.999)
        _ = (loss_d.item(), loss_g.item())
        end, cpu_end = time.perf_counter(), time.process_time()
    return args.batches / (end - start), args.batches / (cpu_end - cpu_start)


def framework(args, processes: int = 1) -> tuple[float, float]:
    """``Trainer.fit`` of the GAN module; returns rank 0's (batches/s, batches/CPU-s)."""
    g, d = dcgan_nets(args)
    opt = lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))
    model = GAN(g, d, optimizer_g=opt, optimizer_d=opt, ema_decay=0.999)
    timer = BatchTimer(args.warmup)
    trainer = cpu_trainer(timer, processes)
    n = (args.warmup + args.batches) * processes  # DDP: each process gets its share
    trainer.fit(model, random_loader(args.image_size, args.batch_size, n))
    return timer.rates() if trainer.is_global_zero else (0.0, 0.0)


def run_worker(kind: str, args) -> tuple[float, float]:
    """One ``--ddp`` measurement in a fresh process (Lightning's ddp launcher relaunches it for rank 1)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    options = [
        f"--{k}={getattr(args, k)}" for k in ("width", "image_size", "batch_size", "batches", "warmup")
    ]
    cmd = [sys.executable, "-m", "bench", "overhead", *options, f"--threads={args.threads}", "--worker", kind]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return tuple(json.loads(lines[-1][len("RESULT ") :]))


def overhead(args) -> dict | None:
    """Framework overhead: GAN ``Trainer.fit`` steps/s against a plain-PyTorch loop over the same nets and batches.

    Both sides run the same algorithm per batch (``bench.baselines.dcgan.gan_step``: D step on fakes made without a
    graph, G step with D frozen, non-saturating loss in logits form, one EMA update, a read of both losses). The
    framework side adds what ``fit`` gives: manual optimization through ``self.optimizers()`` / ``manual_backward`` /
    ``toggled_optimizer``, ``self.log`` of 5 scalars, the loop and callbacks (logger, checkpoints, progress bar and
    grids off: no disk I/O is timed). Runs are interleaved ABBA; the summary is the median of per-pair ratios, on the
    wall clock (steps/s) and on process CPU time (steadier on a loaded machine; equal to wall with 1 idle thread).
    ``--ddp``: 2-process CPU DDP (gloo) against 1 process, same per-process batch, each run a fresh process.

        python -m bench overhead                      # digits-config networks (width 32, 32 px, batch 64)
        python -m bench overhead --width 64 --repeats 7
        python -m bench overhead --ddp
    """
    lightning_quiet()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # Lightning's ddp launcher reads it
    torch.set_num_threads(args.threads)
    seed_everything(0, verbose=False)
    if args.worker:
        rates = framework(args, 2 if args.worker == "ddp" else 1)
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            print("RESULT " + json.dumps(rates), flush=True)
        return None
    if args.ddp:
        sides = {"GAN.fit, 1 process": lambda: run_worker("single", args),
                 "GAN.fit, ddp 2 processes": lambda: run_worker("ddp", args)}  # fmt: skip
    else:
        sides = {"plain PyTorch": lambda: plain(args), "aigc_lightning GAN.fit": lambda: framework(args)}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for r in range(args.repeats):
        # ABBA order: the side that runs second in a pair gets a warmer process (allocator, oneDNN caches)
        for name in list(sides)[:: 1 if r % 2 == 0 or args.ddp else -1]:
            results[name].append(sides[name]())
        print(f"run {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1][0]:.2f}/s" for k, v in results.items()),
              flush=True)  # fmt: skip
    rows = [{"side": name, "batches/s": median(w for w, _ in v), "min": min(w for w, _ in v),
             "max": max(w for w, _ in v), "batches/CPU-s": median(c for _, c in v)} for name, v in results.items()]  # fmt: skip
    base, other = results.values()
    ratio = "ddp/single-process" if args.ddp else "framework/plain"
    pairs = {clock: [o[c] / b[c] for o, b in zip(other, base)] for c, clock in enumerate(("wall", "CPU"))}
    return {"rows": rows, "pair_ratios": [{"clock": k, "ratios": ", ".join(f"{r:.3f}" for r in v)}
                                          for k, v in pairs.items()],
            "summary": {f"{ratio} steps-per-second ratio ({k}, median of pairs)": median(v)
                        for k, v in pairs.items()}}  # fmt: skip


def overhead_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--batch_size", type=int, default=64, help="per process")
    p.add_argument("--batches", type=int, default=30, help="timed batches per run (per process)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches per run")
    p.add_argument("--repeats", type=int, default=5, help="interleaved runs of each side")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (1: steadier)")
    p.add_argument("--ddp", action="store_true", help="2-process CPU ddp vs 1 process instead")
    p.add_argument("--worker", choices=["single", "ddp"], default=None, help=argparse.SUPPRESS)


def sg2_or_dcgan(kind: str, size: int) -> GAN:
    """Nets as configs/gan/stylegan2_digits.yaml (channel_max 32, latent 64, 2 mapping layers, every regulariser)
    and dcgan_digits.yaml (width 32, z 100), one channel."""
    torch.manual_seed(0)
    if kind == "dcgan":
        g, d = (
            Generator(latent_dim=100, channels=1, image_size=size, width=32),
            Discriminator(1, size, width=32),
        )
        return GAN(g, d, bn_stat_batches=0, mean_latent_samples=64)
    adam = lambda params: torch.optim.Adam(params, lr=0.0025, betas=(0.0, 0.99))
    g = StyleGAN2Generator(image_size=size, channels=1, latent_dim=64, n_mlp=2, channel_max=32)
    d = StyleGAN2Discriminator(image_size=size, channels=1, channel_max=32)
    return GAN(g, d, adam, adam, latents=StyleLatents(mixing_prob=0.9), r1=R1(0.05, 16, lazy_correction=True),
               path_length=PathLength(2.0, 4, lazy_correction=True))  # fmt: skip


def stylegan2_speed(args) -> dict:
    """Training throughput (img/s) of the StyleGAN2 GAN module at 32 and 64 px with every regulariser of the
    configs on (style mixing 0.9, path length every 4, lazy R1 every 16), against DCGAN at the same sizes. Random
    images; the first 4 batches are warm-up. On a shared machine compare rows of one run.

        OMP_NUM_THREADS=1 python -m bench stylegan2_speed [--batches 20] [--batch_size 32]
    """
    lightning_quiet()
    rows = []
    for size in args.sizes:
        for kind in ("stylegan2", "dcgan"):
            timer = BatchTimer(4)
            loader = random_loader(size, args.batch_size, args.batches + 4, seed=None)
            cpu_trainer(timer).fit(sg2_or_dcgan(kind, size), loader)
            rows.append({"model": kind, "px": size, "img/s": timer.rates()[0] * args.batch_size})
            print(rows[-1], flush=True)
    return {"rows": rows}


def stylegan2_speed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
