"""The metric card and reference statistics files: what a number was computed from, written next to the number.

- ``score`` turns reference and generated features into metric values with 95 % confidence intervals.
- ``Reference`` is the real side: ``mu``/``sigma`` (FID) and, when kept, the features (KID, precision/recall,
  density/coverage) plus a description of where they came from. ``save_reference`` writes it as safetensors (the
  description as the file's metadata) and the same description as ``<stem>.json``; ``load_reference`` reads it
  back without unpickling anything, and ``check_reference`` refuses a mismatch of extractor, resize or image size
  with one line.
- ``make_card`` / ``write_card`` / ``format_table``: the JSON card and its one printed table.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from torch import Tensor

from aigc_lightning.errors import UserError
from aigc_lightning.evaluation import metrics as M
from aigc_lightning.evaluation.extract import RESIZE_FILTERS, Extractor, ResizeMode

CARD_FORMAT = "aigc-lightning metric card 1"
STATS_FORMAT = "aigc-lightning reference statistics 1"


@dataclass
class Settings:
    """How the metrics are computed (written into the card)."""

    seed: int = 0
    bootstrap: int = (
        20  # FID resamples of the generated set; 0: no FID interval (the other intervals are cheap)
    )
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    k_precision_recall: int = 3
    k_density_coverage: int = 5
    chunk: int = 2048


@dataclass
class Reference:
    """The real side of an evaluation: statistics, optionally features, and where they came from."""

    mu: Tensor
    sigma: Tensor
    features: Tensor | None
    info: dict = field(default_factory=dict)

    @classmethod
    def of_features(cls, features: Tensor, info: dict) -> Reference:
        mu, sigma = M.feature_statistics(features)
        return cls(mu, sigma, features, info)


def describe_set(
    source: str, num_images: int, image_size: tuple[int, int], sha256: str | None, **extra
) -> dict:
    return {
        "source": source,
        "num_images": num_images,
        "image_size": list(image_size),
        "sha256": sha256,
        **extra,
    }


def reference_info(extractor: Extractor, mode: ResizeMode, images: dict) -> dict:
    """What a statistics file must agree on with an evaluation that reuses it."""
    return {"format": STATS_FORMAT, "features": extractor.describe(), "resize": mode, **images}


# ----------------------------------------------------------------------------------------------------------
# Statistics files


def save_reference(reference: Reference, path: str | Path, keep_features: bool = True) -> Path:
    """``path`` (.safetensors: mu, sigma[, features]) and ``<stem>.json`` (the description)."""
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    if path.suffix != ".safetensors":
        raise UserError(f"--save_stats {path}: name the statistics file *.safetensors")
    tensors = {
        "mu": reference.mu.double().cpu().contiguous(),
        "sigma": reference.sigma.double().cpu().contiguous(),
    }
    if keep_features and reference.features is not None:
        tensors["features"] = reference.features.float().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"card": json.dumps(reference.info)})
    path.with_suffix(".json").write_text(json.dumps(reference.info, indent=2) + "\n")
    return path


def load_reference(path: str | Path) -> Reference:
    """A statistics file written by ``save_reference`` (safetensors: no code can run while reading it)."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path).expanduser()
    try:
        with safe_open(str(path), framework="pt") as f:
            info = json.loads((f.metadata() or {}).get("card", "{}"))
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(
            f"cannot read reference statistics {path} ({e}); make them with python -m aigc_lightning.evaluate "
            "--reference DIR --save_stats FILE.safetensors"
        ) from e
    if info.get("format") != STATS_FORMAT or "mu" not in tensors or "sigma" not in tensors:
        raise UserError(
            f"{path} is not a reference statistics file of aigc_lightning.evaluate (--save_stats)"
        )
    return Reference(tensors["mu"], tensors["sigma"], tensors.get("features"), info)


def check_reference(info: dict, extractor: Extractor, mode: ResizeMode, image_size: tuple[int, int]) -> None:
    """One ``UserError`` line when the reference was made with other features, resize or image size."""
    theirs = info.get("features", {})
    problems = []
    if theirs.get("weights_sha256") != extractor.weights_sha256:
        problems.append(f"features {theirs.get('name')} (sha256 {str(theirs.get('weights_sha256'))[:12]}) vs "
                        f"{extractor.name} (sha256 {extractor.weights_sha256[:12]})")  # fmt: skip
    if info.get("resize") != mode:
        problems.append(f"resize {info.get('resize')} vs {mode}")
    if tuple(info.get("image_size", ())) != tuple(image_size):
        size, ours = "x".join(map(str, info.get("image_size", ["?"]))), "x".join(map(str, image_size))
        problems.append(f"reference images {size} px vs generated {ours} px")
    if problems:
        source = info.get("stats_file") or info.get("source")
        raise UserError(
            f"the reference {source} does not match this evaluation ({'; '.join(problems)}); numbers would not be "
            "comparable: recompute the reference with the same --features/--resize at the generated image size"
        )


# ----------------------------------------------------------------------------------------------------------
# Metric values


def _entry(value: float, interval: list[float] | None, method: str) -> dict:
    return {"value": float(value), "ci95": interval, "ci_method": method}


def score(reference: Reference, features: Tensor, logits: Tensor, settings: Settings) -> dict[str, dict]:
    """FID, KID, IS, precision, recall, density and coverage of generated ``features``/``logits`` against
    ``reference`` (KID and the k-NN metrics need the reference's features), each with a 95 % interval."""
    s, out = settings, {}
    mu, sigma = M.feature_statistics(features)
    device = features.device
    fid = M.frechet_distance(reference.mu.to(device), reference.sigma.to(device), mu, sigma)
    ci = M.bootstrap_fid((reference.mu.to(device), reference.sigma.to(device)), features, s.bootstrap, s.seed) if (
        s.bootstrap > 1) else None  # fmt: skip
    out["fid"] = _entry(
        fid, ci, f"value ± 1.96 SD of {s.bootstrap} bootstrap resamples of the generated set, reference fixed"
    )
    real = reference.features.to(device) if reference.features is not None else None
    if real is not None:
        mmd = M.kid_subsets(real, features, s.kid_subsets, s.kid_subset_size, seed=s.seed)
        size = min(s.kid_subset_size, len(real), len(features))
        if (
            size == len(real) == len(features)
        ):  # every subset holds every image: one value, no spread to report
            out["kid"] = _entry(
                mmd.mean(), None, "one subset covers both sets: no interval (lower --kid_subset_size)"
            )
        else:
            out["kid"] = _entry(mmd.mean(), M.percentile_interval(mmd) if len(mmd) > 1 else None,
                                f"2.5-97.5 percentiles of the {s.kid_subsets} subset estimates of {size} images")  # fmt: skip
    splits = min(s.is_splits, len(logits))
    out["is"] = _entry(M.inception_score_splits(logits, splits, s.seed).mean(),
                       M.bootstrap_is(logits, splits, 100, s.seed), "value ± 1.96 SD of 100 bootstrap resamples of the generated set")  # fmt: skip
    if real is not None:
        k = max(s.k_precision_recall, s.k_density_coverage)
        if len(real) <= k or len(features) <= k:
            raise UserError(
                f"precision/recall need more than {k} images on each side; got {len(real)} and {len(features)}"
            )
        per_sample = M.manifold_metrics(real, features, s.k_precision_recall, s.k_density_coverage, s.chunk)
        for name, values in per_sample.items():
            out[name] = _entry(values.mean(), M.bootstrap_mean(values, 1000, s.seed),
                               "bootstrap of per-sample indicators, 1000 resamples, k-NN radii fixed")  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------------------
# The card


def package_versions() -> dict[str, str]:
    names = ("aigc-lightning", "torch", "torchvision", "torchmetrics", "lightning", "numpy", "torch-fidelity")
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()})"


def make_card(
    metrics: dict[str, dict],
    generated: dict,
    reference: dict,
    extractor: Extractor,
    mode: ResizeMode,
    settings: Settings,
    device: torch.device | str = "cpu",
    **extra,
) -> dict:
    return {
        "format": CARD_FORMAT,
        "metrics": metrics,
        "generated": generated,
        "reference": reference,
        "features": extractor.describe(),
        "resize": {"mode": mode, "filter": RESIZE_FILTERS[mode], "default": "clean"},
        "settings": asdict(settings),
        "versions": package_versions(),
        "device": device_name(device),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        **extra,
    }


def write_card(card: dict, path: str | Path, inputs: tuple[str | Path, ...] = ()) -> Path:
    """Write the card as JSON (atomically: a half-written card never replaces an older one)."""
    path = Path(path).expanduser()
    for given in inputs:
        if given and Path(given).expanduser().resolve() == path.resolve():
            raise UserError(f"--out {path} is one of the inputs; pass another file name for the card")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(partial, path)
    return path


def format_table(card: dict) -> str:
    """One table: metric, value, 95 % interval; then N, features and resize in one line."""
    rows = ["| metric | value | 95% CI |", "|---|---|---|"]
    for name, entry in card["metrics"].items():
        ci = entry.get("ci95")
        ci_text = f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "-"
        rows.append(f"| {name} | {entry['value']:.4g} | {ci_text} |")
    g, r = card["generated"], card["reference"]
    rows.append(
        f"N generated {g['num_images']}, N real {r['num_images']}, features {card['features']['name']} "
        f"(sha256 {card['features']['weights_sha256'][:12]}), resize {card['resize']['mode']}, "
        f"{'x'.join(map(str, g['image_size']))} px"
    )
    return "\n".join(rows)


__all__ = [
    "Reference",
    "Settings",
    "check_reference",
    "describe_set",
    "format_table",
    "load_reference",
    "make_card",
    "reference_info",
    "save_reference",
    "score",
    "write_card",
]
