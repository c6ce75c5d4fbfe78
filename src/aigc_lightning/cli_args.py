"""What the user typed: the command line's ``--model.*`` keys and ``limit_*_batches`` literals, which the parsed
config no longer tells apart (``cli.AigcCLI`` uses them to let typed options win over a checkpoint's, and to keep
``1`` one batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace


def model_flag_keys(args: Any) -> list[str]:
    """Keys of the ``--model.<key> …`` / ``--model.<key>=…`` options of a command line (``[]`` for dict args)."""
    if not isinstance(args, (list, tuple)):
        return []
    return [
        a[len("--model.") :].split("=", 1)[0] for a in args if isinstance(a, str) and a.startswith("--model.")
    ]


def namespace_path(ns: Any, key: str) -> str | None:
    """The path of a command-line key in a parsed namespace: ``truncation_psi`` → ``init_args.truncation_psi``
    (subclass mode lets users leave out ``init_args``); ``None`` when it is not there."""
    path: list[str] = []
    for part in key.split("."):
        if not isinstance(ns, Namespace):
            return None
        if part not in ns and isinstance(ns.get("init_args"), Namespace) and part in ns.init_args:
            path.append("init_args")
            ns = ns.init_args
        if part not in ns:
            return None
        path.append(part)
        ns = ns[part]
    return ".".join(path)


BATCH_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def integer_batch_limits(args: Any) -> set[str]:
    """Trainer ``limit_*_batches`` keys whose last setting in ``args`` (``--config`` files, then options) is the
    integer 1.

    jsonargparse turns Lightning's ``Optional[Union[int, float]]`` limits into floats, so ``1`` (one batch)
    arrives as ``1.0`` (all batches). Values above 1 are safe (Lightning casts 2.0 back to 2); only 1 needs
    the literal the user wrote.
    """
    if not isinstance(args, (list, tuple)):
        return set()
    written: dict[str, bool] = {}  # key -> the last value was an integer literal
    tokens = [str(a) for a in args]
    for i, token in enumerate(tokens):
        key, equals, value = token.partition("=")
        if not equals and i + 1 < len(tokens):
            value = tokens[i + 1]
        if key in ("-c", "--config") and Path(value).is_file():
            try:
                trainer = yaml.safe_load(Path(value).read_text()).get("trainer")
            except (OSError, yaml.YAMLError, AttributeError):
                continue  # not a mapping: jsonargparse reports the file
            if isinstance(trainer, dict):
                written.update({n: type(trainer[n]) is int for n in BATCH_LIMITS if n in trainer})
        elif key.startswith("--trainer.") and (name := key.removeprefix("--trainer.")) in BATCH_LIMITS:
            written[name] = value.strip().lstrip("+-").isdigit()
    return {name for name, is_int in written.items() if is_int}
