"""What FID/KID/IS during training cost: time inside ``GenerativeMetrics`` as a share of a config's ``fit`` wall time.

    python bench/fid_cost.py                                   # configs/gan/dcgan_digits.yaml, as configured
    python bench/fid_cost.py --config configs/vae/vae_digits.yaml -- --trainer.max_epochs 10

The config runs exactly as ``python -m aigc_lightning fit --config ...`` would (extra CLI arguments after ``--``),
logging into a temporary folder. The callback times its own work (real-feature caching, generation, feature
extraction, metric computation) with ``time.perf_counter``; the goal is < 5 % of the fit's wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from aigc_lightning.callbacks import GenerativeMetrics
from aigc_lightning.cli import AigcCLI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/gan/dcgan_digits.yaml")
    parser.add_argument("cli_args", nargs="*", help="extra `fit` arguments, after --")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        cli = AigcCLI(
            args=["--config", args.config, "--trainer.default_root_dir", root, "--trainer.enable_progress_bar",
                  "false", *args.cli_args],
            run=False,
        )
        metrics = [c for c in cli.trainer.callbacks if isinstance(c, GenerativeMetrics)]
        if not metrics:
            sys.exit(f"{args.config} has no aigc_lightning.callbacks.GenerativeMetrics in trainer.callbacks")
        start = time.perf_counter()
        cli.trainer.fit(cli.model, cli.datamodule)
        wall = time.perf_counter() - start
        logged = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k in ("val/fid", "val/kid", "val/is")}

    m = metrics[0]
    share = m.seconds / wall
    print("| config | epochs | fit wall s | metrics s | evaluations | num_samples | share |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.config} | {cli.trainer.current_epoch} | {wall:.1f} | {m.seconds:.1f} | {m.evaluations} | "
        f"{m.num_samples} | {100 * share:.2f} % |"
    )
    print("final metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(logged.items())))
    print(f"FID/KID/IS share of fit wall time: {100 * share:.2f} % (goal < 5 %)")


if __name__ == "__main__":
    main()
