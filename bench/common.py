"""What every case shares: clocks, medians, whole-process timing, machine information and markdown tables."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MNIST_PNGS = str(ROOT.parent / "shared/data/mnist_t10k_png")  # the 10,000 MNIST test PNGs in class folders
median = statistics.median


def median_seconds(fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``reps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 0) -> dict[str, list[float]]:
    """Wall seconds of each ``fn``, the functions taking turns once per round (a load change on a shared machine
    hits them all alike); the first ``warmup`` rounds are not kept."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(warmup + rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def run_process(cmd: list[str], cwd: Path = ROOT, env: dict | None = None) -> dict[str, float]:
    """Run ``cmd`` to completion: wall seconds, CPU seconds (user + sys) and peak RSS (MiB) of that process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr.decode()[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def load_average() -> list[float]:
    """1/5/15-minute load averages: well over 0 on an idle machine means other processes inflate the times."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict:
    """Where a result was measured: enough to tell a quiet workstation from a shared CI box or a GPU node."""
    import torch

    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        None,
    )
    return {
        "platform": platform.platform(), "processor": model or platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "load_average": load_average(), "git": git.stdout.strip() or None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }  # fmt: skip


def cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def markdown_table(rows: list[dict]) -> str:
    """Rows of one kind (the first row's keys are the columns) as a markdown table."""
    if not rows:
        return "(no rows)"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def lightning_quiet() -> None:
    """Lightning's per-run notes (no validation loader, hparams, …) are the same every run: keep them out."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
