"""One ``error: …`` line, naming the cause and the fix, for bad command-line and config input.

- ``parse_error_line``: jsonargparse's parse errors (a usage text plus nested union errors, ~80 lines) read for
  the key, the value and the expected type or range. Only jsonargparse's public error *text* is read; the
  regexes below are its whole contract with that text, and tests/test_cli.py runs them against the installed
  jsonargparse, so a release that words its errors differently fails a test instead of printing nonsense.
- ``check_trainer_numbers``: Trainer numbers that Lightning accepts at construction and fails on much later.
- ``trainer_refusal``: Lightning's own refusal of a Trainer option, as one line naming ``--trainer.<key>``.
- ``check_writable_folder``: an output folder that cannot be created or written, before anything runs.
- ``size_option``: the ``--model.…`` option behind a network's ``SizeError``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import tempfile
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from aigc_lightning.errors import UserError
from aigc_lightning.nets.sizes import SizeError

PARSER_KEY = re.compile(r'Parser key "([^"]+)":')
# a key nested in a class_path (or an optimizer callable): the next key lives under its init_args
INTO_INIT_ARGS = re.compile(r"Problem with given class_path|expects a function or a callable class")
RESTRICTION = re.compile(r"Not of type (\w+): (?:(\S+) )?does not conform to restriction ([^\n]+)")
UNKNOWN = re.compile(
    r"Option '([^']+)' is not accepted|does not accept option '([^']+)'|unrecognized arguments: --?(\S+)"
)
CLASS_PATH = re.compile(r"class_path[ =]'([\w.]+)'")
NESTED_ARG = re.compile(r"NestedArg\(key='([^']*)', val='([^'\n]*)'\)")  # what a --model.x.y option typed
VALUE = re.compile(r"(?:Given|Got) value: (.*?)(?:\. Got value:.*)?$|base \d+: '([^']*)'$", re.MULTILINE)
TYPE_NAME = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>|Not of type (\w+)")
SUBCOMMAND = re.compile(r"\b(fit|validate|test|predict)\b")
NON_FINITE = {"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def parse_error_line(message: str, options: list[str], prog: str) -> str:
    """One line for jsonargparse's error ``message``; ``options`` are the valid top-level keys
    (``trainer.max_epochs`` …), ``prog`` the parser's program name (``__main__.py fit``)."""
    subcommand = SUBCOMMAND.search(f"{prog} {message}")
    help_hint = f"`python -m aigc_lightning {subcommand.group(1) + ' ' if subcommand else ''}--help` lists the options"
    if match := RESTRICTION.search(message):
        kind, value, rule = match.groups()
        keys = list(PARSER_KEY.finditer(message, 0, match.start()))
        value = (
            _typed_value(message) or value or (_given_value(_body_after(message, keys[-1])) if keys else None)
        )
        shown = f" {value}" if value else ""
        return f"--{_option(message, match.start())}{shown} is out of range ({kind}); pass a value with {rule.strip()}"
    if match := UNKNOWN.search(message):
        return _unknown_key_line(message, match, options, help_hint)
    keys = list(PARSER_KEY.finditer(message))
    if keys:
        body = _body_after(message, keys[-1])
        types = _expected_types(body)
        value = _typed_value(message) or _given_value(body)
        shown = f" {value}" if value else ""
        option = _option(message, len(message))
        if value and value.strip("'\"").lower() in NON_FINITE:
            return f"--{option}{shown} is not a finite number; pass a finite {types or 'number'}"
        if types:
            return f"--{option}{shown} has the wrong type: expected {types}; pass a value of that type"
    return f"{' '.join(message.split())} ({help_hint})"


def _option(message: str, end: int) -> str:
    """The dotted option of the error: the command line's own spelling when jsonargparse quotes it (a
    ``NestedArg``), else the ``Parser key`` chain up to ``end``, with ``init_args`` where it enters a class."""
    keys = list(PARSER_KEY.finditer(message, 0, end))
    nested = NESTED_ARG.search(message)
    if nested and keys:
        return f"{keys[0].group(1)}.{nested.group(1)}"
    parts: list[str] = []
    for i, key in enumerate(keys):
        parts.append(key.group(1))
        following = message[key.end() : keys[i + 1].start() if i + 1 < len(keys) else end]
        if INTO_INIT_ARGS.search(following):
            parts.append("init_args")
    return ".".join(parts)


def _unknown_key_line(message: str, match: re.Match[str], options: list[str], help_hint: str) -> str:
    nested_name, subcommand_key, argument = match.groups()
    if nested_name is None:  # a top-level key of the subcommand: its usage lists every valid one
        key = (subcommand_key or argument).lstrip("-")
        close = difflib.get_close_matches(key, options, n=1)
        return _unknown_line(key, "", close[0] if close else None, help_hint)
    # a key inside a class_path: the class's signature lists every valid one. The class is named on the
    # error's own line (an optimizer's "Got value: Namespace(class_path=...)") or else before it.
    key = _option(message, match.start())
    if not NESTED_ARG.search(message):
        key = f"{key}.{nested_name}" if key else nested_name
    line_end = message.find("\n", match.end())
    line = message[message.rfind("\n", 0, match.start()) + 1 : line_end if line_end >= 0 else None]
    owners = CLASS_PATH.findall(line) or CLASS_PATH.findall(message, 0, match.start())
    renamed = _class(owners[-1]) if owners else None
    if callable(getattr(renamed, "renamed_option_line", None)) and renamed.renamed_option_line(nested_name):
        return renamed.renamed_option_line(nested_name)  # an option of an older config: what to write instead
    close = difflib.get_close_matches(nested_name, _parameters(owners[-1]) if owners else [], n=1)
    suggestion = f"{key.rpartition('.')[0]}.{close[0]}".lstrip(".") if close else None
    return _unknown_line(key, f" of {owners[-1]}" if owners else "", suggestion, help_hint)


def _unknown_line(key: str, owner: str, suggestion: str | None, help_hint: str) -> str:
    fix = f"did you mean --{suggestion}? Fix or remove it" if suggestion else "fix or remove it"
    return f"--{key} is not an option{owner} (unknown key); {fix} ({help_hint})"


def _class(class_path: str) -> Any:
    """The object ``class_path`` names, or None when it cannot be imported."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _parameters(class_path: str) -> list[str]:
    """The constructor arguments of ``class_path`` (``[]`` when it cannot be imported or inspected)."""
    try:
        target = _class(class_path)
        return [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]
    except (TypeError, ValueError):
        return []


def _body_after(message: str, key: re.Match[str]) -> str:
    """The text nested under ``key`` (its line's rest, then the deeper-indented lines): the error of that key
    alone, without the alternatives of an outer union."""
    lines = message.splitlines()
    row = message.count("\n", 0, key.start())
    indent = len(lines[row]) - len(lines[row].lstrip())
    body = [message[key.end() :].split("\n", 1)[0]]
    for line in lines[row + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    return "\n".join(body)


def _expected_types(body: str) -> str:
    """``int or null`` from a body's ``Subtypes: [<class 'int'>, <class 'NoneType'>]`` or ``Expected a <class
    'int'>`` / ``Not of type PositiveInt`` lines."""
    subtypes = body[body.find("Subtypes: [") :].split("]", 1)[0] if "Subtypes: [" in body else body
    names = dict.fromkeys(a or b for a, b in TYPE_NAME.findall(subtypes))
    return " or ".join("null" if n == "NoneType" else n for n in names)


def _typed_value(message: str) -> str | None:
    nested = NESTED_ARG.search(message)
    return nested.group(2) if nested else None


def _given_value(body: str) -> str | None:
    match = VALUE.search(body)
    return (match.group(1) or match.group(2)) if match else None


# Lightning checks these only when they are used (a ZeroDivisionError, a loop that never ends): minimum, meaning
TRAINER_MINIMUM = {
    "max_epochs": (-1, "-1 (no limit) or a number >= 0"),
    "max_steps": (-1, "-1 (no limit) or a number >= 0"),
    "min_epochs": (0, "a number >= 0"),
    "min_steps": (0, "a number >= 0"),
    "check_val_every_n_epoch": (1, "a number >= 1 (or null to validate by val_check_interval)"),
    "log_every_n_steps": (0, "a number >= 0 (0: no logging)"),
    "accumulate_grad_batches": (1, "a number >= 1"),
    "num_sanity_val_steps": (-1, "-1 (all batches) or a number >= 0"),
    "num_nodes": (1, "a number >= 1"),
    "gradient_clip_val": (0, "a number >= 0"),
    "reload_dataloaders_every_n_epochs": (0, "a number >= 0"),
}


def check_trainer_numbers(trainer: Any) -> None:
    """Raise ``UserError`` naming ``--trainer.<key>`` for the first number of ``TRAINER_MINIMUM`` out of range."""
    if not isinstance(trainer, Namespace):
        return
    for key, (minimum, allowed) in TRAINER_MINIMUM.items():
        value = trainer.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not value >= minimum:
            raise UserError(f"--trainer.{key} {value} is out of range; pass {allowed}")


def trainer_refusal(error: Exception, trainer: Any, parameters: list[str]) -> str:
    """Lightning's refusal ``error`` of a Trainer option as one line naming the option (the first Trainer
    argument its message mentions) and the value the config gave it."""
    text = " ".join(str(error).split())
    key = next((w for w in re.findall(r"\w+", text) if w in parameters), None)
    if key is None:
        return f"the Trainer options were refused ({text}); fix the --trainer option it names"
    value = trainer.get(key) if isinstance(trainer, Namespace) else None
    return f"--trainer.{key} {value} was refused by Lightning ({text}); pass a value it accepts"


def output_folders(config: Any) -> list[tuple[str, str]]:
    """(option, folder) of every folder a fit/validate/test run writes: the Trainer's root (the current folder
    when unset), a ``--checkpoint.dirpath`` and the ``save_dir`` of each configured logger."""
    trainer = config.get("trainer") if isinstance(config, Namespace) else None
    if not isinstance(trainer, Namespace):
        return []
    folders = [("trainer.default_root_dir", trainer.get("default_root_dir") or ".")]
    checkpoint = config.get("checkpoint")
    if isinstance(checkpoint, Namespace) and isinstance(checkpoint.get("dirpath"), str):
        folders.append(("checkpoint.dirpath", checkpoint.dirpath))
    loggers = trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init_args = logger.get("init_args") if isinstance(logger, Namespace) else None
        if isinstance(init_args, Namespace) and isinstance(init_args.get("save_dir"), str):
            folders.append(("trainer.logger.init_args.save_dir", init_args.save_dir))
    return folders


def check_writable_folder(path: str | Path, option: str) -> None:
    """Raise ``UserError`` unless the folder ``path`` exists or can be created, and files can be written in it.

    Tried, not inferred from permission bits: root ignores them, while a read-only mount or /proc refuses
    even root. Nothing is left behind (the probe is a temporary folder in the nearest existing ancestor).
    """
    if "://" in str(path):  # remote storage (s3://, gs://): fsspec reports its own errors
        return
    folder = Path(path).expanduser()
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        where = "it is a file" if ancestor == folder else f"{ancestor} is a file"
        raise UserError(f"--{option} {path} cannot be created: {where}; pass a folder path")
    try:
        Path(tempfile.mkdtemp(prefix=".write-check-", dir=ancestor)).rmdir()
    except OSError as e:
        raise UserError(
            f"--{option} {path} cannot be created or written ({e.strerror} in {ancestor}); pass a folder you "
            "can write to"
        ) from e


def size_option(config: Any, error: SizeError, prefix: str = "") -> str | None:
    """The option (``model.generator.init_args.width``) of the network ``error`` came from: the nested
    ``class_path`` config of class ``error.owner`` whose ``error.name`` is ``error.value``."""
    if not isinstance(config, Namespace):
        return None
    init_args = config.get("init_args")
    if (
        str(config.get("class_path", "")).rsplit(".", 1)[-1] == error.owner
        and isinstance(init_args, Namespace)
        and init_args.get(error.name) == error.value
    ):
        return f"{prefix}init_args.{error.name}"
    for key, value in vars(config).items():
        # ``--model.generator…``: subclass mode lets the command line leave out the model's own init_args
        part = "" if key == "init_args" and prefix.count(".") == 1 else f"{key}."
        for item in value if isinstance(value, list) else [value]:
            found = size_option(item, error, f"{prefix}{part}")
            if found:
                return found
    return None
