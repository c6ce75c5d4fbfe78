"""Size checks shared by the networks' constructors: a zero or negative width, latent size or channel
count otherwise surfaces later as a cryptic tensor error ("negative dimension -4", a oneDNN failure).

The check runs in the constructor, not through a constrained annotation (``PositiveInt``): it must hold for
Python callers too (``Generator(width=0)``), and constrained values would reach the modules' hyper-parameters
as their own pickled class, which ``torch.load(weights_only=True)`` refuses.
"""

from __future__ import annotations

from aigc_lightning.errors import UserError


class SizeError(UserError, ValueError):
    """A network size outside its range; a ``ValueError`` for Python callers, a ``UserError`` for the CLI.

    Args:
        owner: the network class's name (``"Generator"``).
        name: the constructor argument (``"width"``).
        value: the value it got.
        minimum: the smallest allowed value.
    """

    def __init__(self, owner: str, name: str, value: object, minimum: int) -> None:
        self.owner, self.name, self.value, self.minimum = owner, name, value, minimum
        super().__init__(
            f"{owner} {name} must be an integer >= {minimum}, got {value!r}; pass {name} >= {minimum}"
        )


def check_sizes(owner: object, minimum: int = 1, **sizes: int) -> None:
    """Raise ``SizeError`` for the first of ``sizes`` that is not an integer ≥ ``minimum``.

    Args:
        owner: the network (its class name goes into the message).
        minimum: the smallest allowed value (1 for sizes, 0 for counts such as residual blocks).
        **sizes: the constructor's size arguments by name.
    """
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SizeError(type(owner).__name__, name, value, minimum)
