"""Checks for options, made when an object is built so that a bad one fails there, once, with a
message naming it (:class:`~faceid.errors.OptionError`), not later on every image."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

from faceid.errors import OptionError

__all__ = ["boolean", "choice", "integer", "number"]


def boolean(owner: str, name: str, value: object) -> bool:
    """``value`` if it is a bool (numpy's too), else :class:`OptionError`."""
    if type(value).__name__ not in ("bool", "bool_"):
        raise OptionError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def integer(owner: str, name: str, value: object, *, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; a bool, a string or a float that is not whole is refused."""
    if isinstance(value, float) and value.is_integer():
        whole = int(value)
    elif hasattr(value, "__index__") and not isinstance(value, bool):
        whole = operator.index(value)
    else:
        raise OptionError(f"{owner}: {name} must be a whole number, got {value!r}")
    if whole < low or (high is not None and whole > high):
        where = f"at least {low}" if high is None else f"between {low} and {high}"
        raise OptionError(f"{owner}: {name} must be {where}, got {value!r}")
    return whole


def number(owner: str, name: str, value: object, *, low: float, high: float) -> float:
    """``value`` as a finite float in ``[low, high]``."""
    try:
        if isinstance(value, (bool, str, bytes)):
            raise TypeError
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise OptionError(f"{owner}: {name} must be a number, got {value!r}") from None
    if not (math.isfinite(result) and low <= result <= high):
        raise OptionError(f"{owner}: {name} must be between {low:g} and {high:g}, got {value!r}")
    return result


def choice(owner: str, name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise OptionError(f"{owner}: {name} must be one of {', '.join(choices)}; got {value!r}")
    return value
