"""Framework overhead: GAN ``Trainer.fit`` steps/s against a plain-PyTorch loop over the same networks and batches.

Both sides run the same algorithm per batch: one D step on fresh fakes made without a graph (the framework's
``toggled_optimizer`` freezes G; the plain loop uses ``torch.no_grad``), one G step with D frozen, the
non-saturating loss in logits form, one EMA update of the generator, and a read of both loss values (the
framework's ``check_finite``; ``.item()`` in the plain loop). The framework side adds what a user gets from
``fit``: manual optimization through ``self.optimizers()`` / ``manual_backward`` / ``toggled_optimizer``,
``self.log`` of 5 scalars (on Lightning's logging batches), the loop and callbacks (logger, checkpointing,
progress bar and image grids off, so no disk I/O is timed). Runs are interleaved in pairs (plain then framework, then framework then plain, ...);
the summary is the median of the per-pair ratios, so drifting load on a shared machine hits both sides alike.
Each run is timed twice: wall clock (steps/s, the goal's measure) and the process's CPU time (steps per
CPU-second), which is much steadier on a loaded machine and equals wall time on an idle one with 1 thread.

    python bench/overhead.py                      # digits-config networks (width 32, 32 px, batch 64)
    python bench/overhead.py --width 64 --repeats 7
    python bench/overhead.py --clock cpu          # summary line from CPU time (loaded machines)
    python bench/overhead.py --ddp                # 2-process CPU DDP (gloo) vs 1 process, same per-process batch

The last line is ``framework/plain steps-per-second ratio: R`` (goal >= 0.97); with ``--ddp`` it is
``ddp/single-process steps-per-second ratio: R``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

from aigc_lightning.modules import GAN
from aigc_lightning.nets import Discriminator, Generator


def make_nets(args: argparse.Namespace) -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    g = Generator(latent_dim=100, channels=1, image_size=args.image_size, width=args.width)
    d = Discriminator(channels=1, image_size=args.image_size, width=args.width)
    return g, d


def make_loader(args: argparse.Namespace, processes: int = 1) -> DataLoader:
    n = args.batch_size * (args.warmup + args.batches) * processes  # DDP: each process gets its share
    x = torch.rand(n, 1, args.image_size, args.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DataLoader(
        TensorDataset(x, torch.zeros(n)), batch_size=args.batch_size, shuffle=False, drop_last=True
    )


def plain(args: argparse.Namespace) -> tuple[float, float]:
    """The reference: a hand-written loop doing what GAN.training_step does. Returns (batches/s, batches/CPU-s)."""
    g, d = make_nets(args)
    g_ema = Generator(latent_dim=100, channels=1, image_size=args.image_size, width=args.width)
    g_ema.load_state_dict(g.state_dict())
    g_ema.requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    start = cpu_start = end = cpu_end = 0.0
    for i, (real, _) in enumerate(make_loader(args)):
        if i == args.warmup:
            start, cpu_start = time.perf_counter(), time.process_time()
        with torch.no_grad():  # as toggled_optimizer(opt_d) does: G frozen, no graph for the fakes
            fake = g(torch.randn(real.shape[0], 100))
        loss_d = (F.softplus(-d(real)) + F.softplus(d(fake))).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        d.requires_grad_(False)  # as toggled_optimizer(opt_g) does: no D gradients in the G step
        loss_g = F.softplus(-d(g(torch.randn(real.shape[0], 100)))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        d.requires_grad_(True)
        with torch.no_grad():
            decay = min(0.999, (1 + i) / (10 + i))
            torch._foreach_lerp_(list(g_ema.parameters()), list(g.parameters()), 1 - decay)
            for b_ema, b in zip(g_ema.buffers(), g.buffers()):
                b_ema.copy_(b)
        _ = (loss_d.item(), loss_g.item())  # the framework reads both values too (check_finite)
        end, cpu_end = time.perf_counter(), time.process_time()
    return args.batches / (end - start), args.batches / (cpu_end - cpu_start)


class Timer(Callback):
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


def framework(args: argparse.Namespace, processes: int = 1) -> tuple[float, float]:
    """``Trainer.fit`` of the GAN module; returns rank 0's (batches/s, batches/CPU-s)."""
    g, d = make_nets(args)
    opt = lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))
    model = GAN(g, d, optimizer_g=opt, optimizer_d=opt, ema_decay=0.999)
    timer = Timer(args.warmup)
    trainer = Trainer(
        accelerator="cpu", devices=processes, strategy="ddp" if processes > 1 else "auto", max_epochs=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer], num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, make_loader(args, processes))
    return timer.rates() if trainer.is_global_zero else (0.0, 0.0)


def worker(args: argparse.Namespace) -> None:
    """One ``--ddp`` measurement in a fresh process (Lightning's ddp relaunches this script for rank 1)."""
    processes = 2 if args.worker == "ddp" else 1
    rates = framework(args, processes)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        print("RESULT " + json.dumps(rates), flush=True)


def run_worker(kind: str, argv: list[str]) -> tuple[float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--worker", kind]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return tuple(json.loads(lines[-1][len("RESULT ") :]))


def table(title: str, results: dict[str, list[tuple[float, float]]], base: str) -> dict[int, list[float]]:
    """Print median wall/CPU rates and return the per-pair ratios (other / base) for each clock (0 wall, 1 cpu)."""
    print(title)
    print(f"{'':28s} {'batches/s':>10s} {'min':>7s} {'max':>7s} {'batches/CPU-s':>14s}")
    for name, values in results.items():
        wall, cpu = [v[0] for v in values], [v[1] for v in values]
        print(f"{name:28s} {statistics.median(wall):10.3f} {min(wall):7.3f} {max(wall):7.3f} "
              f"{statistics.median(cpu):14.3f}")  # fmt: skip
    other = next(k for k in results if k != base)
    pairs = {c: [o[c] / b[c] for o, b in zip(results[other], results[base])] for c in (0, 1)}
    for c, name in ((0, "wall"), (1, "CPU")):
        print(f"per-pair {name:4s} ratios: {', '.join(f'{r:.3f}' for r in pairs[c])}  "
              f"(median {statistics.median(pairs[c]):.3f})")  # fmt: skip
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=64, help="per process")
    parser.add_argument("--batches", type=int, default=30, help="timed batches per run (per process)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches per run")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (1: steadier)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="clock of the summary line")
    parser.add_argument("--ddp", action="store_true", help="2-process CPU ddp vs 1 process instead")
    parser.add_argument("--worker", choices=["single", "ddp"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # Lightning's hparams / no-val-loader notes, the same every run
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # Lightning's ddp launcher reads it
    torch.set_num_threads(args.threads)
    seed_everything(0, verbose=False)
    if args.worker:
        worker(args)
        return
    clock = 0 if args.clock == "wall" else 1
    setup = (
        f"DCGAN width {args.width}, {args.image_size} px, batch {args.batch_size}, {args.threads} thread(s)"
    )
    if args.ddp:
        argv = [a for a in sys.argv[1:] if a != "--ddp"]
        results: dict[str, list[tuple[float, float]]] = {
            "GAN.fit, 1 process": [],
            "GAN.fit, ddp 2 processes": [],
        }
        for r in range(args.repeats):
            results["GAN.fit, 1 process"].append(run_worker("single", argv))
            results["GAN.fit, ddp 2 processes"].append(run_worker("ddp", argv))
            print(f"run {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1][0]:.2f}/s" for k, v in results.items()),
                  flush=True)  # fmt: skip
        pairs = table(f"\n{setup} per process, {args.batches} timed batches x {args.repeats} interleaved runs; "
                      "rank 0's steps (one batch per process each)", results, "GAN.fit, 1 process")  # fmt: skip
        print(f"ddp/single-process steps-per-second ratio: {statistics.median(pairs[clock]):.3f}")
        return
    results = {"plain PyTorch": [], "aigc_lightning GAN.fit": []}
    for r in range(args.repeats):
        # ABBA order: the side that runs second in a pair gets a warmer process (allocator, oneDNN caches)
        if r % 2 == 0:
            results["plain PyTorch"].append(plain(args))
            results["aigc_lightning GAN.fit"].append(framework(args))
        else:
            results["aigc_lightning GAN.fit"].append(framework(args))
            results["plain PyTorch"].append(plain(args))
        print(f"run {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1][0]:.2f}/s" for k, v in results.items()),
              flush=True)  # fmt: skip
    pairs = table(f"\n{setup}, {args.batches} timed batches x {args.repeats} interleaved runs (median)", results,
                  "plain PyTorch")  # fmt: skip
    print(f"framework/plain steps-per-second ratio: {statistics.median(pairs[clock]):.3f}")


if __name__ == "__main__":
    main()
