"""Evaluate a folder of generated images against a reference folder or statistics file; write a metric card.

    python -m aigc_lightning.evaluate --generated DIR --reference DIR_OR_STATS [--features digits|inception|PATH]
        [--num_samples N] [--resize clean|legacy] --out CARD.json
    python -m aigc_lightning.evaluate --reference DIR --save_stats REF.safetensors     # statistics, once

Prints one table (FID, KID, IS, precision, recall, density, coverage with 95 % intervals) and writes the card:
the values, N of each side, the reference's hash, the extractor and its weights' sha256, the resize mode and
filter, the image size, the seed and the package versions. See docs/metrics.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from aigc_lightning.errors import UserError
from aigc_lightning.evaluation.card import (
    Reference,
    Settings,
    check_reference,
    describe_set,
    format_table,
    load_reference,
    make_card,
    reference_info,
    save_reference,
    score,
    write_card,
)
from aigc_lightning.evaluation.extract import Extractor, ImageFolder, extract, load_extractor


class OneLineParser(argparse.ArgumentParser):
    """argparse with its error as one ``error: …`` line (exit status 2), like the main CLI's."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see python -m aigc_lightning.evaluate --help\n")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m aigc_lightning.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--generated", help="folder of generated images (sorted; sub-folders included)")
    p.add_argument(
        "--reference", required=True, help="folder of real images, or a .safetensors statistics file"
    )
    p.add_argument(
        "--features",
        default="digits",
        help="digits (packaged, default), inception, or a classifier checkpoint",
    )
    p.add_argument("--inception_weights", help="local Inception weights file for --features inception")
    p.add_argument(
        "--num_samples",
        type=positive,
        help="use the first N generated images (default: all); 50000 for papers",
    )
    p.add_argument("--resize", choices=("clean", "legacy"), default="clean",
                   help="clean: bicubic antialiased (default); legacy: TF1 bilinear, as published Inception FIDs")  # fmt: skip
    p.add_argument("--out", default="metrics.json", help="the metric card to write (default metrics.json)")
    p.add_argument("--save_stats", help="also write the reference's statistics to this .safetensors file")
    p.add_argument("--stats_features", choices=("true", "false"), default="true",
                   help="keep the reference features in --save_stats (needed for KID, precision/recall)")  # fmt: skip
    p.add_argument("--batch_size", type=positive, default=100)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, …")
    p.add_argument("--seed", type=int, default=0, help="seeds KID subsets, IS splits and the bootstraps")
    p.add_argument(
        "--bootstrap", type=non_negative, default=20, help="FID bootstrap resamples (0: no FID interval)"
    )
    p.add_argument("--kid_subsets", type=positive, default=100)
    p.add_argument("--kid_subset_size", type=positive, default=1000)
    p.add_argument("--is_splits", type=positive, default=10)
    return p


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise UserError(
            f"--device {name} is not available here ({str(e).splitlines()[0]}); pass cpu or auto"
        ) from e
    return device


def folder_features(folder: ImageFolder, extractor: Extractor, args, device: torch.device, desc: str):
    batches = folder.batches(args.batch_size, extractor.channels)
    return extract(batches, extractor, args.resize, device, len(folder.files), desc)


def reference_of(args, extractor: Extractor, device: torch.device) -> Reference:
    """The reference from a statistics file or a folder (its statistics saved when --save_stats asks)."""
    path = Path(args.reference).expanduser()
    if path.is_file():
        if args.save_stats:
            raise UserError("--save_stats needs --reference to be a folder of images, not a statistics file")
        reference = load_reference(path)
        reference.info["stats_file"] = str(path)
        return reference
    folder = ImageFolder.open(path, "--reference")
    features, _, size = folder_features(folder, extractor, args, device, "reference")
    info = reference_info(
        extractor, args.resize, describe_set(str(path), len(folder.files), size, folder.sha256())
    )
    reference = Reference.of_features(features, info)
    if args.save_stats:
        saved = save_reference(reference, args.save_stats, keep_features=args.stats_features == "true")
        print(f"reference statistics: {saved} (+ {saved.with_suffix('.json').name})")
    return reference


def run(args) -> dict | None:
    device = pick_device(args.device)
    if args.generated is None and not args.save_stats:
        raise UserError(
            "pass --generated DIR to evaluate, or --save_stats FILE to only compute reference statistics"
        )
    extractor = load_extractor(args.features, args.inception_weights)
    extractor.net.to(device)
    generated = ImageFolder.open(args.generated, "--generated", args.num_samples) if args.generated else None
    reference = reference_of(args, extractor, device)
    if generated is None:
        return None
    features, logits, size = folder_features(generated, extractor, args, device, "generated")
    check_reference(reference.info, extractor, args.resize, size)
    settings = Settings(args.seed, args.bootstrap, args.kid_subsets, args.kid_subset_size, args.is_splits)
    metrics = score(reference, features, logits, settings)
    ref_side = {k: v for k, v in reference.info.items() if k not in ("format", "features", "resize")}
    card = make_card(
        metrics,
        describe_set(str(generated.root), len(generated.files), size, generated.sha256()),
        ref_side,
        extractor,
        args.resize,
        settings,
        device,
    )
    out = write_card(card, args.out, (args.generated, args.reference))
    print(format_table(card))
    print(f"metric card: {out}")
    return card


def main(argv: list[str] | None = None) -> dict | None:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    except OSError as e:
        raise SystemExit(f"error: {e.strerror or e} ({e.filename}); check the paths you passed") from None


if __name__ == "__main__":
    main()
