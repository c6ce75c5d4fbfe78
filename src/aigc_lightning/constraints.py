"""Constrained numeric types that jsonargparse has no name for; the rest come from ``jsonargparse.typing``
(``PositiveInt``, ``NonNegativeInt``, ``PositiveFloat``, ``NonNegativeFloat``, ``ClosedUnitInterval``,
``OpenUnitInterval``). A value outside the range fails at parse time with one message naming the option.
"""

from __future__ import annotations

from jsonargparse.typing import restricted_number_type

# [0, 1): decays and held-out fractions, where 1 would freeze an average or leave no training data
UnitIntervalBelowOne = restricted_number_type("UnitIntervalBelowOne", float, [(">=", 0), ("<", 1)])

__all__ = ["UnitIntervalBelowOne"]
