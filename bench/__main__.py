"""``python -m bench NAME [options] [--json OUT.json]``: run one benchmark case; ``python -m bench --list``.

Each case prints its tables and, with ``--json``, writes one JSON record: ``name``, ``command``, ``machine``,
``parameters`` and ``results`` (``rows`` and other lists of rows, a ``summary`` and ``notes``).
``python -m bench tables bench/results/*.json`` writes those records' tables into the docs pages, between the
markers ``<!-- bench:ID -->`` and ``<!-- /bench:ID -->`` where ID is the JSON file's name without ``.json``.
Run from the repository root (the cases start ``python -m aigc_lightning`` and ``python -m bench.baselines.*``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re
import shlex
import sys
from pathlib import Path

from bench.common import ROOT, machine_info, markdown_table

# name -> (module, one line); the module defines ``NAME(args) -> dict`` and ``NAME_args(parser)``
CASES = {
    "overhead": ("bench.overhead", "GAN Trainer.fit steps/s against a plain loop; --ddp: 2 processes vs 1"),
    "stylegan2_speed": ("bench.overhead", "StyleGAN2 training img/s (every regulariser on) against DCGAN"),
    "user_overhead": (
        "bench.user_overhead",
        "the whole `fit` command against a plain script; --help start-up",
    ),
    "exit_time": (
        "bench.user_overhead",
        "interpreter exit after `main` returns: normal, gc.freeze, os._exit",
    ),
    "vae_ablation": ("bench.user_overhead", "VAE digits fit CPU time with one convenience off at a time"),
    "gpu_check": ("bench.gpu_check", "each config x precision under DDP on all GPUs (--cpu: on the CPU)"),
    "gan_fid": (
        "bench.gan_quality",
        "MNIST GAN FID/KID/IS: config vs plain DCGAN loop, equal batches and CPU s",
    ),
    "cdcgan_fid": ("bench.conditional_quality", "MNIST conditional GAN: FID and class accuracy, config vs plain loop"),
    "gan_sweep": ("bench.gan_quality", "one variant of dcgan_mnist.yaml: FID of its EMA and raw generators"),
    "gan_digits": ("bench.gan_quality", "FID/KID/IS of a digits GAN checkpoint, with and without truncation"),
    "stylegan2_vs_dcgan": ("bench.gan_quality", "StyleGAN2 vs DCGAN digits configs at equal wall time: FID"),
    "vae_nll": ("bench.vae_quality", "VAE importance-weighted NLL: config vs a plain-PyTorch VAE"),
    "vae_sweep": ("bench.vae_quality", "one variant of the plain VAE recipe search (IW-NLL at k = 200)"),
    "style_speed": ("bench.style", "Gatys: time to the PyTorch tutorial's best loss, per image pair"),
    "style_eval_cost": ("bench.style", "Gatys: milliseconds per loss evaluation, tutorial vs ours"),
    "style_bf16_error": ("bench.style", "Gatys: loss and gradient error of the bfloat16 phase"),
    "style_plateau": ("bench.style", "Gatys: best loss after k evaluations from perturbed starts"),
    "style_network_speed": (
        "bench.style_network",
        "feed-forward style network img/s vs Gatys; video flicker",
    ),
    "style_network_quality": (
        "bench.style_network",
        "style network: edges kept and colours taken at 96-512 px vs Gatys; flicker, trails",
    ),
    "fid_cost": ("bench.costs", "FID/KID/IS callback time as a share of a config's fit"),
    "evaluation": ("bench.evaluation", "python -m aigc_lightning.evaluate at N = 2.5k-10k: wall time, peak RSS"),
    "evaluation_reference": ("bench.evaluation", "the metric card on MNIST halves and with half the classes dropped"),
    "data_loading": ("bench.costs", "in-memory uint8 folder data vs per-item PIL vs torchvision ImageFolder"),
    "data_cache": (
        "bench.data_cache",
        "20k JPEGs at 64/256 px: per-item decode vs the prepared cache, img/s",
    ),
    "soak": ("bench.costs", "digits GAN for N minutes with frequent checkpoints: RSS over time"),
    "profile_shares": ("bench.costs", "a py-spy raw profile summed into coarse stages"),
    "stylegan2_vs_rosinality": (
        "bench.stylegan2_step",
        "StyleGAN2 G+D training on the CPU: GAN module vs rosinality's train()",
    ),
    "parity": ("bench.stylegan2_parity", "StyleGAN2 nets vs rosinality's model.py, import and export"),
    "video_digits": ("bench.video", "moving-digits MoCoGAN: one label per clip %, displacement vs data, frame FID"),
}


def finite(value):
    """The record with non-finite floats as strings ("inf", "nan"): JSON has no literal for them."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def render(record: dict) -> str:
    """A record's results as markdown: its command, the machine, every list of rows as a table, the summary."""
    m = record["machine"]
    gpus = ", ".join(m.get("cuda") or []) or "no GPU"
    lines = [(f"`{record['command']}` — {m.get('processor')}, {m.get('cpus')} CPUs, {gpus}, torch {m.get('torch')}, "
              f"{m.get('date', '')[:10]}"), ""]  # fmt: skip
    for key, value in record["results"].items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines += ([] if key == "rows" else [f"{key}:", ""]) + [markdown_table(value), ""]
    for key, value in record["results"].get("summary", {}).items():
        lines.append(f"- {key}: {value:.4g}" if isinstance(value, float) else f"- {key}: {value}")
    lines += [f"- {note}" for note in record["results"].get("notes", [])]
    return "\n".join(lines).rstrip() + "\n"


def tables(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m bench tables", description="write JSON records into the docs")
    p.add_argument("records", nargs="+", type=Path)
    p.add_argument("--docs", nargs="+", type=Path,
                   default=[ROOT / "docs" / n for n in ("benchmarks.md", "style_benchmarks.md", "results.md")])  # fmt: skip
    args = p.parse_args(argv)
    pages = {page: page.read_text() for page in args.docs}
    for path in args.records:
        key, block = path.stem, render(json.loads(path.read_text()))
        pattern = re.compile(
            rf"(<!-- bench:{re.escape(key)} -->\n).*?(<!-- /bench:{re.escape(key)} -->)", re.DOTALL
        )
        hits = [page for page, text in pages.items() if pattern.search(text)]
        for page in hits:
            pages[page] = pattern.sub(lambda m, block=block: m.group(1) + block + m.group(2), pages[page])
        print(f"{path}: {', '.join(str(p) for p in hits) or f'no <!-- bench:{key} --> section in the docs'}")
    for page, text in pages.items():
        page.write_text(text)


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("--list", "-l", "-h", "--help"):
        print(__doc__.splitlines()[0] + "\n\ncases:")
        for name, (_, line) in CASES.items():
            print(f"  {name:20s} {line}")
        print(f"  {'tables':20s} write JSON records' tables into the marked sections of docs/*.md")
        return None
    if argv[0] == "tables":
        return tables(argv[1:])
    name = argv[0]
    if name not in CASES:
        sys.exit(f"unknown case {name!r}; `python -m bench --list` lists them")
    module = importlib.import_module(CASES[name][0])
    run, doc = getattr(module, name), getattr(module, name).__doc__ or CASES[name][1]
    p = argparse.ArgumentParser(prog=f"python -m bench {name}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="also write the record to this JSON file")
    getattr(module, f"{name}_args")(p)
    args = p.parse_args(argv[1:])
    results = run(args)
    if results is None:  # a worker process of a multi-process case: its parent reports
        return None
    record = {"name": name, "command": shlex.join(["python", "-m", "bench", *argv]), "machine": machine_info(),
              "parameters": {k: v for k, v in vars(args).items() if k != "json"}, "results": results}  # fmt: skip
    print("\n" + render(record))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(finite(record), indent=1, default=str, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    if results.get("failed"):  # a check that failed (parity beyond its tolerance): exit status 1
        sys.exit(1)
    return record


if __name__ == "__main__":
    main()
