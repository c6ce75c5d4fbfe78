"""Checkpoints of plain data: every module's checkpoint loads with ``torch.load``'s default ``weights_only=True``.

Two kinds of objects would otherwise reach a checkpoint's pickle and make torch ≥ 2.6 refuse it
("Unsupported global"):

- jsonargparse's constrained numbers (``PositiveInt``, ``ClosedUnitInterval`` …) are subclasses of int/float that
  pickle as their own class. They come from the command line into hyper-parameters, and through an
  ``OptimizerCallable``'s arguments into the optimizer's param groups and the LR scheduler's state;
- networks and optimizer factories passed as objects (the Python API, and ``load_from_checkpoint`` itself, which
  rebuilds a module from its saved config and hands it the built networks).

``PlainHyperparameters`` is the one place that handles both, for every module that lists it first among its bases:
hyper-parameters keep plain values only, every checkpoint is converted to plain values as it is written, and a
module rebuilt by ``load_from_checkpoint`` takes back the network configs it was built from, so a checkpoint it
writes again loads again.
"""

from __future__ import annotations

import inspect
import warnings
from collections import OrderedDict
from typing import Any

from jsonargparse import Namespace
from torch import Tensor

PLAIN_SCALARS = (bool, int, float, str, bytes, type(None))


def plain(value: Any) -> Any:
    """``value`` with every int/float subclass instance turned into an int/float and every jsonargparse
    ``Namespace`` into a dict, through dicts, lists and tuples. A container without such values is returned as
    it is (a ``state_dict`` keeps its ``_metadata``); tensors and other objects are returned as they are."""
    if isinstance(value, bool) or type(value) in PLAIN_SCALARS or isinstance(value, Tensor):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Namespace):
        return plain(value.as_dict())
    if isinstance(value, dict):
        changed = {key: new for key, item in value.items() if (new := plain(item)) is not item}
        if not changed and type(value) in (dict, OrderedDict):
            return value
        copy = OrderedDict(value) if isinstance(value, OrderedDict) else dict(value)  # AttributeDict → dict
        copy.update(changed)
        return copy
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        items = [plain(item) for item in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    return value


def is_data(value: Any) -> bool:
    """Whether ``value`` is plain data a config can hold: scalars, and dicts/lists/tuples of them."""
    if isinstance(value, PLAIN_SCALARS):  # int/float subclasses too: ``plain`` converts them
        return True
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, dict):
        return all(is_data(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return all(is_data(item) for item in value)
    return False


class PlainHyperparameters:
    """Mixin for LightningModules (list it before ``LightningModule``): plain hyper-parameters and checkpoints.

    - ``save_hyperparameters()`` keeps the arguments that are plain data; objects (networks, optimizer factories)
      are left out, as Lightning recommends, without its warning. Under LightningCLI they are their ``class_path``
      configs, which are data and stay, so ``Class.load_from_checkpoint(path)`` rebuilds them. A module built in
      Python loads with its networks passed again: ``GAN.load_from_checkpoint(path, generator=G,
      discriminator=D)``.
    - ``on_save_checkpoint``: the whole checkpoint (hyper-parameters, optimizer and scheduler states, callback
      states) is converted with ``plain``. Subclasses that override it call ``super().on_save_checkpoint`` last.
    - ``on_load_checkpoint``: hyper-parameters the module lacks (the configs ``load_from_checkpoint`` turned into
      objects) are taken from the checkpoint. Subclasses that override it call ``super().on_load_checkpoint``.
    """

    def save_hyperparameters(self, *args: Any, ignore: Any = None, frame: Any = None, logger: bool = True) -> None:
        frame = frame if frame is not None else inspect.currentframe().f_back
        with warnings.catch_warnings():  # the objects it warns about are removed right below
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module` and is already saved.*")
            super().save_hyperparameters(*args, ignore=ignore, frame=frame, logger=logger)
        self.remove_ignored_hparams([key for key, value in self.hparams.items() if not is_data(value)])
        self.hparams.update(plain(dict(self.hparams)))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # bases after this one (e.g. LossDictSteps' counters) first
        checkpoint.update(plain(checkpoint))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("hyper_parameters") or {}
        self.hparams.update({key: value for key, value in saved.items() if key not in self.hparams})


__all__ = ["PlainHyperparameters", "is_data", "plain"]
