"""Units of quantities written in a spec (`49k`, `48Ki`, `6s`, `1GiB`) and their dimensions.

Plan values are plain numbers: counts as integers, times in seconds, memory in bytes (cascadec/plan.py).
"""

from __future__ import annotations

from typing import Literal

from cascadec.contract.suggest import suggest

Dimension = Literal["count", "time", "memory"]

# Exact integer factors where the unit has one, so that `49k` and `2GiB` stay exact integers.
UNITS: dict[str, tuple[Dimension, int | float]] = {
    "k": ("count", 10**3), "M": ("count", 10**6), "G": ("count", 10**9),
    "Ki": ("count", 1024), "Mi": ("count", 1024**2),
    "ms": ("time", 1e-3), "s": ("time", 1), "min": ("time", 60), "h": ("time", 3600),
    "B": ("memory", 1), "KB": ("memory", 10**3), "MB": ("memory", 10**6), "GB": ("memory", 10**9),
    "TB": ("memory", 10**12), "KiB": ("memory", 1024), "MiB": ("memory", 1024**2),
    "GiB": ("memory", 1024**3), "TiB": ("memory", 1024**4),
}


# Dimensions whose values need a unit: a bare `80` is a count or seconds where those are meant, but as memory it
# would be 80 bytes, never what `memory_per_gpu = 80` or `unit_tests(memory = 512)` means.
NEEDS_UNIT: frozenset[Dimension] = frozenset({"memory"})


def unit_missing(dim: Dimension, unit: str | None) -> bool:
    """Whether a value of dimension ``dim`` written with ``unit`` (None: a plain number) lacks the unit it
    needs (:data:`NEEDS_UNIT`)."""
    return unit is None and dim in NEEDS_UNIT


def scale(value: int | float, unit: str | None) -> tuple[Dimension | None, int | float]:
    """``(dimension, value in base units)``; a bare number has dimension None.

    Raises KeyError for an unknown unit.
    """
    if unit is None:
        return None, value
    dim, factor = UNITS[unit]
    return dim, value * factor


def as_number(value: int | float) -> int | float:
    """Integral floats become ints so that `1.5KiB` is 1536, not 1536.0."""
    if isinstance(value, int):
        return value
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


def unit_help() -> str:
    """The known units by dimension, for help lines: ``counts `k M ...`, times `ms ...`, memory `B ...```."""
    words = {"count": "counts", "time": "times", "memory": "memory"}
    return ", ".join(f"{words[dim]} `{' '.join(u for u, (d, _) in UNITS.items() if d == dim)}`" for dim in words)



def unit_guess(text: str, unit: str, dim: Dimension | None = None) -> tuple[str, str] | None:
    """``(text with the unit it most likely means, a note)`` for an unknown ``unit`` in the number ``text``,
    among the units of dimension ``dim`` (any when None); the note says when only the case was wrong."""
    close = suggest(unit, [u for u, (d, _) in UNITS.items() if dim in (None, d)])
    if close is None:
        return None
    return text[:-len(unit)] + close, " (units are case-sensitive)" if close.lower() == unit.lower() else ""


def unit_fix(text: str, unit: str, dim: Dimension | None = None) -> str:
    """The help line of an unknown ``unit`` in the number ``text`` (`unit_guess`), then every unit."""
    guess = unit_guess(text, unit, dim)
    return (f"did you mean `{guess[0]}`?{guess[1]}; known units: " if guess else "units: ") + unit_help()
