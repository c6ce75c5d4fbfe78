"""Pretrained folders: ``save_pretrained(DIR)`` / ``from_pretrained(DIR_OR_REPO_ID)`` / ``push_to_hub(REPO_ID)``.

A folder holds what it takes to rebuild a trained module without this run's checkpoint (docs/share.md)::

    model.safetensors   the module's weights (safetensors: tensors only, nothing to unpickle)
    config.json         the module's class and hyper-parameters; every network as its ``class_path`` + ``init_args``
    README.md           a model card: model, data, training length, metrics, how to load it

Loading reads JSON and safetensors only, and instantiates only classes under ``aigc_lightning``, ``torch`` and
``lightning`` (a folder from the Hub cannot name other code). ``GAN.from_pretrained(DIR).sample(n, seed=S)`` equals
the checkpoint's ``sample(n, seed=S)``: the weights are the same tensors and every derived state (EMA batch-norm
statistics, the truncation centre) is recomputed from them the same way.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from pathlib import Path
from typing import Any

import torch

from aigc_lightning.errors import UserError
from aigc_lightning.modules.hparams import is_data, plain

FORMAT = "aigc-lightning-pretrained"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
TRUSTED = ("aigc_lightning.", "torch.", "lightning.")  # the only class paths a folder may name
# Rebuilding these networks must not download anything: their weights are in model.safetensors.
NO_DOWNLOAD = {"aigc_lightning.nets.VGGFeatures": {"weights": "none"}, "aigc_lightning.nets.vgg.VGGFeatures": {
    "weights": "none"}}  # fmt: skip
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError as e:
        raise UserError('pretrained folders need safetensors: pip install "aigc-lightning[share]"') from e
    return safetensors.torch


def object_config(value: Any) -> dict | None:
    """``{"class_path", "init_args"}`` of an object built in Python, read back from the attributes named like its
    constructor's arguments; ``None`` when an argument without a default has no plain attribute, or when a network
    rebuilt from them has other tensors (an attribute that is not its argument)."""
    cls = type(value)
    init_args: dict[str, Any] = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        attribute = getattr(value, name, inspect.Parameter.empty)
        if attribute is not inspect.Parameter.empty and is_data(attribute):
            init_args[name] = plain(attribute)
        elif p.default is inspect.Parameter.empty:
            return None
    state = getattr(value, "state_dict", None)
    if (
        state is not None
    ):  # attributes may not be the arguments: rebuilt, the network must have the same tensors
        try:
            rebuilt = cls(**init_args).state_dict()
        except (TypeError, ValueError, RuntimeError, UserError):  # arguments it does not take or accept
            return None
        if {k: v.shape for k, v in rebuilt.items()} != {k: v.shape for k, v in state().items()}:
            return None
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def _is_factory(value: Any) -> bool:
    """An optimizer or scheduler factory (a class, function or partial), not an object to describe."""
    return isinstance(value, (type, functools.partial)) or inspect.isroutine(value)


def _check_trusted(value: Any, where: str) -> None:
    """Refuse a ``class_path`` outside ``TRUSTED`` anywhere in ``value`` (a config from a file or the Hub)."""
    if isinstance(value, dict):
        path = value.get("class_path")
        if isinstance(path, str) and not path.startswith(TRUSTED):
            raise UserError(f"{where} names class {path!r}, outside aigc_lightning/torch/lightning; refused")
        for item in value.values():
            _check_trusted(item, where)
    elif isinstance(value, list):
        for item in value:
            _check_trusted(item, where)


def _no_download(value: Any) -> Any:
    """``value`` with the init args of ``NO_DOWNLOAD`` networks replaced (their weights come from the file)."""
    if isinstance(value, dict):
        value = {k: _no_download(v) for k, v in value.items()}
        if value.get("class_path") in NO_DOWNLOAD:
            value["init_args"] = {**value.get("init_args", {}), **NO_DOWNLOAD[value["class_path"]]}
        return value
    return [_no_download(v) for v in value] if isinstance(value, list) else value


def resolve_folder(name: str | Path) -> Path:
    """A local folder, or a Hugging Face Hub repo id downloaded (JSON, safetensors, README) into the Hub cache."""
    folder = Path(name)
    if folder.is_dir():
        if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
            raise UserError(
                f"{folder} is not a pretrained folder (needs {CONFIG} and {WEIGHTS}); write one with "
                "`python -m aigc_lightning.export CKPT DIR --format pretrained`"
            )
        return folder
    if not REPO_ID.match(str(name)):
        raise UserError(f"pretrained folder {name} does not exist; pass a folder written by save_pretrained")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise UserError(
            f'{name} is no folder here; Hub repo ids need: pip install "aigc-lightning[share]"'
        ) from e
    try:
        return Path(snapshot_download(str(name), allow_patterns=[CONFIG, WEIGHTS, CARD, "*.png"]))
    except Exception as e:  # offline, unknown repo, no access: one line either way
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(
            f"cannot fetch Hub repo {name} ({type(e).__name__}: {first}); check the id and the network, or pass a "
            "local folder"
        ) from e


def build_module(cls: type, hparams: dict) -> Any:
    """``cls`` built from hyper-parameters whose objects are ``class_path`` configs, as LightningCLI builds it
    (jsonargparse's class arguments; what ``load_from_checkpoint`` does for CLI checkpoints)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "module", fail_untyped=False)
    try:
        config = parser.parse_object({"module": hparams})
    except (
        Exception
    ) as e:  # jsonargparse's ArgumentError / ValueError: a key or value the class does not take
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"the folder's config.json does not build a {cls.__name__} ({first})") from e
    return parser.instantiate_classes(config).module


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for a LightningModule whose networks are
    constructor arguments (GAN, VAE, StyleNetwork). List it after ``PlainHyperparameters``."""

    def pretrained_config(self) -> dict[str, Any]:
        """config.json's content: the module's class, hyper-parameters with every constructor object as its
        ``class_path`` config (a module built in Python has them read back from its attributes)."""
        hparams = plain(dict(self.hparams))
        for key in ("_instantiator", "_class_path"):  # config.json's "module" names the class
            hparams.pop(key, None)
        for name, p in inspect.signature(type(self).__init__).parameters.items():
            value = getattr(self, name, None)
            if name in hparams or name == "self" or value is None or _is_factory(value):
                continue  # kept, or an optimizer factory: a factory is for training, the defaults do
            config = object_config(value)
            if config is None and p.default is inspect.Parameter.empty:
                raise UserError(
                    f"cannot describe {type(self).__name__}.{name} ({type(value).__name__}) as a config; build the "
                    "module from a config (the CLI's checkpoints always can be exported)"
                )
            if config is not None:
                hparams[name] = config
        if hparams.get("generator_checkpoint"):  # the rosinality file's networks are now in the weights
            hparams["generator_checkpoint"] = None
            hparams["generator"] = object_config(self.generator)
            hparams["discriminator"] = object_config(self.discriminator)
        cls = type(self)
        return {
            "format": FORMAT,
            "module": f"{cls.__module__}.{cls.__qualname__}",
            "hyper_parameters": hparams,
        }

    def save_pretrained(self, folder: str | Path, card: str | None = None) -> Path:
        """Write ``model.safetensors``, ``config.json`` and ``README.md`` (``card``, or a generated model card)
        into ``folder``; returns it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.pretrained_config()
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.state_dict().items()}
        _safetensors().save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
        (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        if card is None:
            from aigc_lightning.model_card import model_card

            card = model_card(config, self)
        (folder / CARD).write_text(card)
        return folder

    @classmethod
    def from_pretrained(cls, name: str | Path, map_location: str | torch.device = "cpu") -> Any:
        """The module saved in folder ``name`` (or Hub repo id ``name``), in eval mode on ``map_location``."""
        folder = resolve_folder(name)
        try:
            config = json.loads((folder / CONFIG).read_text())
        except (OSError, ValueError) as e:
            raise UserError(
                f"cannot read {folder / CONFIG} ({e}); write the folder again with save_pretrained"
            ) from e
        module_path = config.get("module", "") if isinstance(config, dict) else ""
        target = load_class(module_path, f"{folder / CONFIG}")
        if not issubclass(target, cls):
            raise UserError(
                f"{folder} holds a {target.__name__}, not a {cls.__name__}; use {target.__name__}.from_pretrained"
            )
        hparams = {
            k: v
            for k, v in config.get("hyper_parameters", {}).items()
            if k not in ("_class_path", "_instantiator")
        }
        _check_trusted(hparams, str(folder / CONFIG))
        module = build_module(target, _no_download(hparams))
        state = _safetensors().load_file(str(folder / WEIGHTS))
        try:
            missing, unexpected = module.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shapes differ
            missing, unexpected = [str(e).splitlines()[1].strip()], []
        if missing or unexpected:
            raise UserError(
                f"{folder / WEIGHTS} does not fit its {CONFIG} (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}); write the folder again with save_pretrained"
            )
        module.hparams.update(plain(hparams))  # configs back in hparams: the module saves and exports again
        return module.to(map_location).eval()

    def push_to_hub(self, repo_id: str, private: bool = False, token: str | None = None) -> str:
        """Upload this module's pretrained folder to the Hugging Face Hub repo ``repo_id`` (created if needed);
        returns the repo's URL."""
        import tempfile

        try:
            from huggingface_hub import HfApi
        except ImportError as e:
            raise UserError('push_to_hub needs huggingface_hub: pip install "aigc-lightning[share]"') from e
        api = HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            api.upload_folder(repo_id=repo_id, folder_path=str(self.save_pretrained(tmp)))
        return str(url)


def load_class(module_path: str, where: str) -> type:
    """The module class ``aigc_lightning.modules.<file>.<Class>`` named in a config; refuses any other path."""
    import importlib

    if not module_path.startswith("aigc_lightning.modules.") or "." not in module_path:
        raise UserError(f"{where} names module class {module_path!r}, not an aigc_lightning module; refused")
    file, _, name = module_path.rpartition(".")
    target = getattr(importlib.import_module(file), name, None)
    if not isinstance(target, type) or not issubclass(target, PretrainedMixin):
        raise UserError(f"{where} names {module_path!r}, which has no pretrained folders")
    return target


def load_pretrained(name: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """The module of a pretrained folder or Hub repo, whatever its class (GAN, VAE, StyleNetwork)."""
    folder = resolve_folder(name)
    config = json.loads((folder / CONFIG).read_text())
    return load_class(config.get("module", ""), str(folder / CONFIG)).from_pretrained(folder, map_location)


def checkpoint_class(path: str | Path) -> tuple[type, dict]:
    """The module class a CLI checkpoint names (its ``_class_path`` hyper-parameter) and the checkpoint's dict,
    read with ``weights_only=True``; a ``UserError`` for a missing or foreign file."""
    from aigc_lightning.callbacks.checkpoint import check_checkpoint_file

    try:
        check_checkpoint_file(str(path))
    except UserError as e:  # its message names the fit/predict option; here the file is an argument
        raise UserError(str(e).replace("--ckpt_path ", "checkpoint ", 1)) from e
    checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    class_path = (checkpoint.get("hyper_parameters") or {}).get("_class_path", "")
    if not class_path:
        raise UserError(
            f"checkpoint {path} does not name its module class (it was not written by the CLI); call "
            "model.save_pretrained(DIR) in Python instead"
        )
    return load_class(class_path, f"checkpoint {path}"), checkpoint


def load_model(name: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """A GAN, VAE or StyleNetwork from a pretrained folder, a Hub repo id or a CLI checkpoint file, in eval mode."""
    if Path(name).is_file():
        cls, _ = checkpoint_class(name)
        return cls.load_from_checkpoint(str(name), map_location=map_location).eval()
    return load_pretrained(name, map_location)


__all__ = [
    "PretrainedMixin",
    "checkpoint_class",
    "load_model",
    "load_pretrained",
    "object_config",
    "resolve_folder",
]
