"""Units of quantities written in a spec (`49k`, `48Ki`, `6s`, `1GiB`) and their dimensions.

Plan values are plain numbers: counts as integers, times in seconds, memory in bytes (cascadec/plan.py).
"""

from __future__ import annotations

from typing import Literal

Dimension = Literal["count", "time", "memory"]

UNITS: dict[str, tuple[Dimension, float]] = {
    "k": ("count", 1e3), "M": ("count", 1e6), "G": ("count", 1e9),
    "Ki": ("count", 1024.0), "Mi": ("count", 1024.0**2),
    "ms": ("time", 1e-3), "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0),
    "B": ("memory", 1.0), "KB": ("memory", 1e3), "MB": ("memory", 1e6), "GB": ("memory", 1e9),
    "TB": ("memory", 1e12), "KiB": ("memory", 1024.0), "MiB": ("memory", 1024.0**2),
    "GiB": ("memory", 1024.0**3), "TiB": ("memory", 1024.0**4),
}


def scale(value: float, unit: str | None) -> tuple[Dimension | None, float]:
    """``(dimension, value in base units)``; a bare number has dimension None.

    Raises KeyError for an unknown unit.
    """
    if unit is None:
        return None, value
    dim, factor = UNITS[unit]
    return dim, value * factor


def as_number(value: float) -> int | float:
    """Integral floats become ints so that `1GiB` is 1073741824, not 1073741824.0."""
    return int(value) if float(value).is_integer() and abs(value) < 2**63 else value


def unit_help() -> str:
    """The known units by dimension, for help lines: ``counts `k M ...`, times `ms ...`, memory `B ...```."""
    words = {"count": "counts", "time": "times", "memory": "memory"}
    return ", ".join(f"{words[dim]} `{' '.join(u for u, (d, _) in UNITS.items() if d == dim)}`" for dim in words)
