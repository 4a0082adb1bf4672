"""A ``tiny(...)`` call's ``rope_scaling`` (transformers' ``rope_parameters``) record, checked on its own and in
the spec's words: that it is a record, that its ``rope_type`` is one transformers has (its
``ROPE_INIT_FUNCTIONS``, plus ``default``; an unknown one is a raw ``KeyError`` when the model is built), and
that it has the entries its type requires (transformers' ``Missing required keys`` error), with a full record
that passes. Used by `cascadec.contract.tiny`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from cascadec.contract.suggest import suggest
from cascadec.contract.tiny_rules import written
from cascadec.contract.tiny_values import TinyProblem, shown

ROPE_KEYS = ("rope_scaling", "rope_parameters")
# transformers' `_check_received_keys` (modeling_rope_utils): raised as a KeyError by the config class
_MISSING = re.compile(r"Missing required keys in `rope_parameters` for 'rope_type'='([^']*)': (\{[^}]*\})")
# Values for the entries a RoPE type requires, as published with the models that introduced them (Llama 3.1's
# `low_freq_factor`/`high_freq_factor`); the lengths and context sizes are the tiny model's own
# (`example_entry`).
# transformers' `_validate_yarn_rope_parameters` (modeling_rope_utils), logged: the factor as written, then the
# ratio of the positions to the pre-YaRN context
_YARN_FACTOR = re.compile(r"explicitly set RoPE scaling factor \(config\.rope_parameters\['factor'\] = ([^)]*)\) "
                          r"does not match .* = ([0-9.eE+-]+)\)\. Using the explicit factor")
_PUBLISHED = {"factor": 2.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0}


def rope_types() -> tuple[str, ...]:
    """The ``rope_type`` values transformers builds: ``default`` and the keys of its ``ROPE_INIT_FUNCTIONS``."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    return ("default", *ROPE_INIT_FUNCTIONS)


def rope_record_problem(key: str, value: Any, builds: Callable[[dict[str, Any]], bool]) -> TinyProblem | None:
    """``rope_scaling = value`` that is not a record, or whose ``rope_type`` (or legacy ``type``) transformers
    does not have; ``builds(record)`` says whether a record passes every check (to pick the type a hint
    suggests). None for another key, or a record whose type is known."""
    if key not in ROPE_KEYS:
        return None
    if not isinstance(value, dict):
        return TinyProblem("value", key, f"`{key} = {shown(value)}` must be a record of RoPE settings",
                           f"write e.g. `{key} = {written({'rope_type': 'linear', 'factor': 2.0})}`, or remove "
                           f"`{key}`")
    entry = next((k for k in ("rope_type", "type") if k in value), None)
    kinds = rope_types()
    if entry is None or value[entry] in kinds:
        return None
    given = value[entry]
    close = suggest(given, kinds) if isinstance(given, str) else None
    fits = [t for t in ([close] if close else []) + list(kinds) if builds({**value, entry: t})]
    fix = f"write `{key} = {written({**value, entry: fits[0]})}`" if fits else f"remove `{key}`"
    listed = ", ".join(f'"{t}"' for t in kinds)
    return TinyProblem("value", key, f"`{entry} = {shown(given)}` in `{key}` is not a RoPE type of transformers "
                       f"(it has {listed})", fix, entry=entry)


def missing_rope_problem(key: str, value: Any, error: str, sizes: Mapping[str, int],
                         builds: Callable[[dict[str, Any]], bool]) -> TinyProblem | None:
    """transformers' ``error`` that the record ``key = value`` lacks entries its ``rope_type`` requires, at its
    ``rope_type`` entry, with the full record (:func:`example_entry`); ``sizes`` holds the tiny model's
    ``max_position_embeddings`` and ``head_dim``. Where that record does not pass (``builds``), the context the
    model was trained for is added: transformers takes it from the model's positions, which llama3 refuses as
    too long. None for another error."""
    found = _MISSING.search(error)
    if key not in ROPE_KEYS or not isinstance(value, dict) or found is None:
        return None
    missing = sorted(k.strip(" '\"") for k in found.group(2).strip("{}").split(",") if k.strip())
    full = {**value, **{k: example_entry(k, value, sizes) for k in missing}}
    trained = "original_max_position_embeddings"
    if trained not in full and not builds(full):
        full[trained] = example_entry(trained, full, sizes)
    listed = ", ".join(f"`{k}`" for k in missing)
    entry = next((k for k in ("rope_type", "type") if k in value), None)
    return TinyProblem("value", key, f"`{key}` with `rope_type = {shown(found.group(1))}` needs {listed} as well",
                       f"write e.g. `{key} = {written(full)}`", entry=entry)


def example_entry(name: str, record: Mapping[str, Any], sizes: Mapping[str, int]) -> Any:
    """A value of the RoPE entry ``name`` that transformers accepts for a tiny model of ``sizes``: the context
    it was trained for is its positions over the record's ``factor`` (what YaRN and llama3 check), and
    longrope's per-frequency factors are one per pair of a head's dimensions."""
    factor = record.get("factor", _PUBLISHED["factor"])
    factor = factor if isinstance(factor, (int, float)) and factor >= 1 else _PUBLISHED["factor"]
    if name == "original_max_position_embeddings":
        return max(int(sizes["max_position_embeddings"] // factor), 1)
    if name in ("short_factor", "long_factor"):
        return [1.0] * (sizes["head_dim"] // 2)
    if name == "rope_theta":
        return sizes.get("rope_theta", 10000.0)
    return _PUBLISHED.get(name, 1.0)


def yarn_factor_problem(config: Mapping[str, Any], line: str) -> TinyProblem | None:
    """transformers' warning ``line`` that a YaRN ``factor`` is not the ratio of ``max_position_embeddings`` to
    ``original_max_position_embeddings`` (it builds the model with the factor as written), in the spec's words
    at the record's `factor`, with the factor or the original context that makes them agree. None for another
    line."""
    found = _YARN_FACTOR.search(line)
    key = next((k for k in ROPE_KEYS if isinstance(config.get(k), dict)), None)
    if found is None or key is None:
        return None
    record = config[key]
    factor, original, ratio = record.get("factor"), record.get("original_max_position_embeddings"), float(found[2])
    if not isinstance(factor, (int, float)) or not isinstance(original, int):
        return None
    positions = round(ratio * original)
    shown_ratio = shown(float(ratio))
    fix = f"write `factor = {shown_ratio}` in `{key}`"
    if factor > 0 and positions % factor == 0:
        fix += f", or `original_max_position_embeddings = {int(positions // factor)}`"
    return TinyProblem("warned", key, f"`factor = {shown(factor)}` in `{key}` is not `max_position_embeddings / "
                       f"original_max_position_embeddings` = {positions} / {original} = {shown_ratio}: YaRN "
                       f"scales the context by the factor as written", fix + " (YaRN's factor is that ratio)",
                       entry="factor")
