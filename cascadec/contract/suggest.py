""""Did you mean" help lines for misspelt names, keys and choices (difflib)."""

from __future__ import annotations

import difflib
from typing import Iterable


# Names users write for a candidate that difflib would not find (or would match to the wrong one: `gpu` is
# closer to `cpu` than to `cuda`).
SYNONYMS = {"gpu": "cuda", "float32": "fp32", "float": "fp32", "bfloat16": "bf16"}


def listed(candidates: Iterable[str]) -> str:
    """```a`, `b```: each candidate once, in the given order. Every help line that lists names goes through
    here, because callers build candidate lists by concatenation (the stages plus `base`, the domains plus
    `default`) and a spec may declare a name the language already gives (a stage named `base`, CAS331)."""
    return ", ".join(f"`{c}`" for c in dict.fromkeys(candidates))


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``name`` means: the same name in another case (``BF16``), a known synonym
    (:data:`SYNONYMS`), a candidate followed by a suffix (``h100_80gb``), else the closest candidate (difflib
    ratio >= 0.6), else None."""
    options = sorted(set(candidates))
    same = [c for c in options if c.lower() == name.lower()]
    if same:
        return same[0]
    if SYNONYMS.get(name.lower()) in options:
        return SYNONYMS[name.lower()]
    # a candidate with something appended (`h100_80gb` for `h100`): difflib may prefer a longer neighbour
    stems = [c for c in options if len(name) > len(c) and name.lower().startswith(c.lower()) and name[len(c)] in "_-"]
    if stems:
        return max(stems, key=len)
    found = difflib.get_close_matches(name, options, n=1)
    return found[0] if found else None


def did_you_mean(name: str, candidates: Iterable[str], what: str) -> str:
    """A help line: the closest candidate, else every candidate (all of them: a partial list would
    suggest that the missing ones do not exist)."""
    options = sorted(set(candidates))
    close = suggest(name, options)
    if close:
        return f"did you mean `{close}`?"
    return f"valid {what}: {listed(options)}" if options else f"declare a {what.rstrip('s')} first"
