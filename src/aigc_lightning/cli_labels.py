"""The data's classes for a conditional model: what ``cli.link_image_shape`` links besides channels and image size.

A model whose config says ``conditional: true`` gets ``num_classes`` in every nested network that has that argument,
and ``class_names`` in the model, from the DataModule (``ImageDataModule.require_classes``: class sub-folders
sorted by name, torchvision targets, the digits' labels), so no config repeats them. Data without labels (a flat
folder) ends the command with one line naming the folder and the layout it needs.
"""

from __future__ import annotations

import importlib
from typing import Any

from jsonargparse import Namespace

from aigc_lightning.errors import UserError


def data_module(data_cfg: Any) -> Any:
    """The DataModule a parsed ``data`` config describes (its constructor only stores its arguments)."""
    if not isinstance(data_cfg, Namespace) or not isinstance(data_cfg.get("class_path"), str):
        raise UserError("a conditional model needs labelled data: pass --data (e.g. a folder of class sub-folders)")
    module, _, name = data_cfg.class_path.rpartition(".")
    args = data_cfg.get("init_args")
    return getattr(importlib.import_module(module), name)(**(args.as_dict() if isinstance(args, Namespace) else {}))


def with_labels(model_cfg: Any, data_cfg: Any, subcommand: str | None) -> Any:
    """The data's arguments to link into the model, plus ``num_classes`` and ``class_names`` for a conditional one.

    ``predict`` keeps the classes a trained run's config.yaml records (its data need not be there any more).
    """
    data_args = data_cfg.get("init_args") if isinstance(data_cfg, Namespace) else None
    model_args = model_cfg.get("init_args") if isinstance(model_cfg, Namespace) else None
    if not (isinstance(model_args, Namespace) and model_args.get("conditional")):
        return data_args
    names = model_args.get("class_names")
    if not (subcommand == "predict" and names):
        names = data_module(data_cfg).require_classes()
    linked = data_args.clone() if isinstance(data_args, Namespace) else Namespace()
    linked["num_classes"], linked["class_names"] = len(names), [str(n) for n in names]
    return linked


__all__ = ["data_module", "with_labels"]
