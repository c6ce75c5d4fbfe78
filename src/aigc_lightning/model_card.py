"""The model card (``README.md``) of a pretrained folder: what the model is, what it was trained on and for how long,
its metrics, and how to load it. Built from ``config.json``'s content, the module and, when exporting a checkpoint,
the checkpoint's training state (epochs, batches, data, best monitored metrics)."""

from __future__ import annotations

from typing import Any


def _short(value: Any) -> str:
    """A config value on one line: a ``class_path`` config as ``Class(arg=…, …)``."""
    if isinstance(value, dict) and "class_path" in value:
        args = ", ".join(f"{k}={_short(v)}" for k, v in (value.get("init_args") or {}).items())
        return f"{value['class_path'].rsplit('.', 1)[-1]}({args})"
    return repr(value)


def _metrics(checkpoint: dict) -> list[str]:
    """``monitor: best score`` of every ModelCheckpoint in the checkpoint's callback states."""
    lines = []
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if isinstance(state, dict) and state.get("monitor") and state.get("best_model_score") is not None:
            score = state["best_model_score"]
            score = float(score.item() if hasattr(score, "item") else score)
            lines.append(f"| {state['monitor']} (best) | {score:.4g} | {key.split('{', 1)[0]} |")
    return lines


def model_card(config: dict, module: Any, checkpoint: dict | None = None, source: str | None = None) -> str:
    """The card's Markdown. ``checkpoint``: the exported checkpoint's dict (tensors unused), ``source``: its path."""
    name = config["module"].rsplit(".", 1)[-1]
    hparams = config["hyper_parameters"]
    networks = [(k, v) for k, v in hparams.items() if isinstance(v, dict) and "class_path" in v
                and not v["class_path"].startswith("torch.optim")]  # fmt: skip
    lines = [
        "---",
        "library_name: aigc-lightning",
        "tags: [aigc-lightning, pytorch-lightning, generative]",
        "---",
        f"# {name} (aigc-lightning pretrained folder)",
        "",
        (
            f"An `{config['module']}` saved by `save_pretrained`: `model.safetensors` (weights), `config.json` "
            "(class and hyper-parameters; every network as `class_path` + `init_args`) and this card."
        ),
        "",
        "## Model",
        "| part | config |",
        "|---|---|",
        *[f"| {k} | `{_short(v)}` |" for k, v in networks],
    ]
    shape = getattr(getattr(module, "generator_ema", None), "image_shape", None)
    if shape is None and hasattr(module, "sample"):
        shape = "see `sample`"
    extras = {
        "image shape": shape,
        "latent_dim": getattr(module, "latent_dim", None),
        "parameters": f"{sum(p.numel() for p in module.parameters()):,}",
    }
    lines += ["", *[f"- {k}: {v}" for k, v in extras.items() if v is not None]]
    if checkpoint is not None:
        data = checkpoint.get("datamodule_hyper_parameters") or {}
        counters = checkpoint.get("counters") or {}
        lines += ["", "## Training"]
        if source:
            lines.append(f"- checkpoint: `{source}`")
        lines.append(
            f"- epochs: {checkpoint.get('epoch', '?')}, optimizer steps: {checkpoint.get('global_step', '?')}"
        )
        if "batches" in counters:
            lines.append(f"- training batches: {counters['batches']}")
        if data:
            lines.append(f"- data: `{_short(data) if 'class_path' in data else data}`")
        metrics = _metrics(checkpoint)
        if metrics:
            lines += ["", "## Metrics", "| metric | value | from |", "|---|---|---|", *metrics]
            lines.append("")
            lines.append("Metric definitions and extractors: docs/metrics.md of aigc-lightning.")
    lines += [
        "",
        "## Use",
        "```python",
        f"from aigc_lightning.modules import {name}",
        f'model = {name}.from_pretrained("THIS_FOLDER_OR_REPO_ID")',
    ]
    if hasattr(module, "sample"):
        lines.append("images = model.sample(16, seed=0)  # (16, C, H, W) in [0, 1]; image i from seed 0 + i")
    if hasattr(module, "stylize"):
        lines.append("y = model.stylize(x)  # RGB (B, 3, H, W) in [0, 1] -> stylised, same size")
    lines += ["```", "", "Loading reads JSON and safetensors only: nothing is unpickled.", ""]
    return "\n".join(lines)


__all__ = ["model_card"]
