"""Range checks for every number a request or a fault rule carries.

JSON numbers reach the emulator as Python ints of any size (``10**400``) or floats that may be
``inf`` or ``nan`` (``1e400``, ``NaN``); either, unchecked, ends in an ``OverflowError`` or a
``ValueError`` deep inside the emulator, a 500. One function checks kind, finiteness and range
before anything converts or compares, and answers a 400 naming the field.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InvalidRequest

__all__ = ["checked_number"]


def checked_number(value: Any, name: str, *, low: float, high: float,
                   integer: bool = False) -> Any:
    """``value`` if it is a finite number (an integer with ``integer``) in ``[low, high]``;
    else :class:`InvalidRequest` naming ``name`` and the range."""
    kinds = int if integer else (int, float)
    ok = (not isinstance(value, bool) and isinstance(value, kinds)
          and (isinstance(value, int) or math.isfinite(value)) and low <= value <= high)
    if not ok:
        kind = "an integer" if integer else "a number"
        raise InvalidRequest(f"'{name}' must be {kind} between {_shown(low)} and {_shown(high)}.",
                             param=name)
    return value


def _shown(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)
