""""Did you mean" help lines for misspelt names, keys and choices (difflib)."""

from __future__ import annotations

import difflib
from typing import Iterable


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate (difflib ratio >= 0.6) or None."""
    found = difflib.get_close_matches(name, sorted(candidates), n=1)
    return found[0] if found else None


def did_you_mean(name: str, candidates: Iterable[str], what: str) -> str:
    """A help line: the closest candidate, else every candidate (all of them: a partial list would
    suggest that the missing ones do not exist)."""
    options = sorted(candidates)
    close = suggest(name, options)
    if close:
        return f"did you mean `{close}`?"
    listed = ", ".join(f"`{c}`" for c in options)
    return f"valid {what}: {listed}" if listed else f"declare a {what.rstrip('s')} first"
