"""Class labels of conditional models: what a user may pass as ``labels`` / ``--class_label`` and what it means.

One rule for every conditional model (GAN, VAE) and for predict: ``labels`` is an int (every image that class), a
class name, a sequence or tensor of n ints, or ``None`` = cycle through the classes (image i gets class
i mod num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from aigc_lightning.errors import UserError


def class_index(label: int | str, num_classes: int, class_names: Sequence[str] | None = None) -> int:
    """The class index of ``label``: an int (or a string of one) in [0, num_classes), or a class name."""
    names = list(class_names or [])
    if isinstance(label, str) and label in names:  # a name wins over its reading as a number ("0" … "9" agree)
        return names.index(label)
    try:
        index = int(label)
    except (TypeError, ValueError):
        known = f"one of {', '.join(names)}" if names else f"an integer in [0, {num_classes})"
        raise UserError(f"class label {label!r} is not a class of this model; pass {known}") from None
    if not 0 <= index < num_classes:
        raise UserError(f"class label {index} is out of range; pass an integer in [0, {num_classes})")
    return index


def resolve_labels(
    labels: int | str | Sequence[int] | Tensor | None,
    n: int,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
) -> Tensor | None:
    """Labels (n,) long for ``n`` images of a model with ``num_classes`` classes; ``None`` for an unconditional
    model (which refuses any ``labels``)."""
    if not num_classes:
        if labels is not None:
            raise UserError("labels were given, but this model is unconditional (it was trained without classes)")
        return None
    if labels is None:
        return torch.arange(n, device=device) % num_classes  # image i gets class i mod num_classes
    if isinstance(labels, (int, str)):
        return torch.full((n,), class_index(labels, num_classes, class_names), device=device, dtype=torch.long)
    y = torch.as_tensor([class_index(int(v), num_classes) for v in torch.as_tensor(labels).flatten().tolist()])
    if len(y) != n:
        raise UserError(f"got {len(y)} labels for {n} images; pass one label, n labels or None")
    return y.to(device=device, dtype=torch.long)


def network_classes(generator: object, discriminator: object, conditional: bool) -> int:
    """The networks' common ``num_classes`` (0: unconditional); ``UserError`` if they differ or ``conditional``
    asks for classes the networks lack."""
    g, d = getattr(generator, "num_classes", 0), getattr(discriminator, "num_classes", 0)
    if g != d or (conditional and not g):
        raise UserError(
            f"model.conditional needs both networks with the same num_classes > 0, got {g} and {d}; the CLI sets "
            "them from the data (labelled data: class sub-folders, MNIST/CIFAR-10 targets, the digits' labels)"
        )
    return g


__all__ = ["class_index", "network_classes", "resolve_labels"]
