"""How long a command's process takes to *exit* after its work is done, and what ``gc.freeze()`` changes (issue #15).

Runs a short VAE digits ``fit`` (``--epochs``) through ``aigc_lightning.cli.main`` in a fresh process per mode,
which prints a timestamp when ``main`` returns; the parent notes when the process has ended:

- ``normal``: plain interpreter exit (what ``main`` alone would get);
- ``freeze``: ``gc.freeze()`` first, as the entry point ``cli.run`` does;
- ``os._exit``: no finalisation at all (the floor; not something to ship: atexit handlers and flushes are skipped).

It also prints the child's atexit handlers' time, one full ``gc.collect()`` and the number of objects the
collector tracks at that point (in a separate ``normal`` process, so the exit times above are not affected).

    OMP_NUM_THREADS=1 python bench/exit_time.py --repeats 3
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

ROOT = Path(__file__).resolve().parents[1]

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


def exit_seconds(mode: str, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, mode, root, str(epochs)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        out, _ = proc.communicate()
        ended = time.time()
    end = float(next(line.split()[1] for line in out.splitlines() if line.startswith("END ")))
    return ended - end


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; load average {os.getloadavg()[0]:.2f}")
    times: dict[str, list[float]] = {"normal": [], "freeze": [], "os._exit": []}
    for _ in range(args.repeats):
        for mode, values in times.items():  # the modes take turns
            values.append(exit_seconds(mode, args.epochs))
    with tempfile.TemporaryDirectory() as root:
        out = subprocess.run([sys.executable, "-c", CHILD, "probe", root, str(args.epochs)], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    handlers, collect, objects = next(line.split()[1:] for line in out.splitlines() if line.startswith("PROBE"))
    print("| exit after `main` returns | seconds (median) | runs |\n|---|---:|---|")
    for mode, values in times.items():
        print(f"| {mode} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    print(f"\natexit handlers {float(handlers):.3f} s; one full gc.collect() {float(collect):.3f} s over "
          f"{int(objects):,} tracked objects")  # fmt: skip


if __name__ == "__main__":
    main()
