"""What a ``tiny(...)`` config's class-level rules refuse, in the spec's words (the keys it wrote, their values)
rather than transformers' (``validate_architecture``'s "The hidden size (65) is not a multiple of ...", or
``Unrecognized keys in `rope_parameters` ...`` for a ``rope_scaling`` the spec wrote), each with a value that
passes. Used by `cascadec.contract.tiny`, which builds the configs.
"""

from __future__ import annotations

import re
from ast import literal_eval
from collections.abc import Callable, Mapping
from typing import Any

from cascadec.contract.tiny_values import TinyProblem, shown

# transformers' `_check_received_keys` (modeling_rope_utils): a warning, not an error
_UNUSED_ROPE = re.compile(r"Unrecognized keys in `rope_parameters` for 'rope_type'='([^']*)': (\{.*\})")
# transformers' `validate_rope` (modeling_rope_utils), raised by the config class
_ODD_ROTARY = re.compile(r"RoPE requires an even rotary dimension, but got `head_dim`=(\d+)")
# RoPE types that take a `factor` and nothing more that is required, then those that need more keys
ROPE_TYPES = ("linear", "dynamic", "yarn", "longrope", "llama3")
_ROPE_KEYS = ("rope_scaling", "rope_parameters")


def written_key(config: Mapping[str, Any], attr: str, aliases: Mapping[str, str]) -> str | None:
    """The key of ``config`` that sets the config attribute ``attr``: ``attr`` itself or the class's own name
    for it (``aliases`` is its ``attribute_map``: gpt2 writes `n_head` for `num_attention_heads`)."""
    return next((k for k in config if k in (attr, aliases.get(attr))), None)


def heads_problem(config: Mapping[str, Any], sizes: Mapping[str, Any], aliases: Mapping[str, str],
                  has_kv: bool) -> TinyProblem | None:
    """Heads that do not divide the width, or key-value heads that do not divide the heads. ``sizes`` holds the
    config's ``hidden_size``, ``num_attention_heads``, ``num_key_value_heads`` and ``head_dim`` (None where
    unset); ``has_kv`` whether the class has key-value heads at all. Some classes (llama) refuse the first
    mismatch in a class validator, others (qwen2) not at all, and none the second: either fails only at the
    first forward, with a tensor-size error."""
    hidden, heads, kv = sizes.get("hidden_size"), sizes.get("num_attention_heads"), sizes.get("num_key_value_heads")
    if not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in (hidden, heads)):
        return None
    keys = {a: written_key(config, a, aliases) for a in ("hidden_size", "num_attention_heads", "num_key_value_heads")}

    def said(attr: str, value: int) -> str:
        return f"`{keys[attr]} = {value}`" if keys[attr] else f"`{aliases.get(attr, attr)}` ({value}, the default)"

    if has_kv and isinstance(kv, int) and kv > 0 and heads % kv:
        fits = max(d for d in range(1, kv + 1) if heads % d == 0)
        blamed = keys["num_key_value_heads"] or keys["num_attention_heads"]
        fix = f"`{keys['num_key_value_heads'] or 'num_key_value_heads'} = {fits}`"
        more = [h for h in range(heads, hidden + 1) if h % kv == 0 and hidden % h == 0]
        if blamed == keys["num_attention_heads"] and more:  # fewer key-value heads only if the width fits
            fix = f"`{blamed} = {more[0]}`" + (f", or add {fix}" if hidden % heads == 0 or "head_dim" in config
                                               else "")
        return TinyProblem("value", blamed, f"{said('num_key_value_heads', kv)} must divide "
                           f"{said('num_attention_heads', heads)}", f"write e.g. {fix}")
    if "head_dim" not in config and sizes.get("head_dim") in (None, hidden // heads) and hidden % heads:
        blamed = keys["num_attention_heads"] or keys["hidden_size"]
        # an even head width: transformers refuses RoPE on an odd one
        width = max(2 * heads, round(hidden / (2 * heads)) * 2 * heads)
        width_fix = f"`{keys['hidden_size'] or aliases.get('hidden_size', 'hidden_size')} = {width}`"
        step = kv if has_kv and isinstance(kv, int) and kv > 0 else 1
        divisors = [d for d in range(heads, 0, -1) if hidden % d == 0 and d % step == 0]
        fix = width_fix if blamed == keys["hidden_size"] or not divisors else \
            f"`{blamed} = {divisors[0]}`, or {width_fix}"
        return TinyProblem("value", blamed, f"{said('hidden_size', hidden)} is not a multiple of "
                           f"{said('num_attention_heads', heads)}", f"write e.g. {fix}")
    return None


def odd_rotary_problem(config: Mapping[str, Any], sizes: Mapping[str, Any], aliases: Mapping[str, str],
                       factor: float | None, error: str = "") -> TinyProblem | None:
    """A head whose rotary part is an odd number of dimensions wide, which RoPE (turning pairs of dimensions)
    cannot take whole: transformers refuses it in some classes' validator (its ``error``), in others it fails
    at the first forward with a tensor-size error. ``sizes`` as for :func:`heads_problem`; ``factor`` is the
    share of each head RoPE turns (``partial_rotary_factor``, as ``int(head_dim * factor)`` in transformers'
    rotary embeddings), None for a model type without RoPE."""
    factor = 1.0 if factor is None and _ODD_ROTARY.search(error) else factor
    hidden, heads, dim = (sizes.get(a) for a in ("hidden_size", "num_attention_heads", "head_dim"))
    if factor is None or not all(_positive(x) for x in (hidden, heads)):
        return None
    width = dim if _positive(dim) else hidden // heads
    if width <= 0 or int(width * factor) % 2 == 0:
        return None
    part = "" if factor == 1 else f", of which RoPE turns {int(width * factor)} (`partial_rotary_factor` {factor:g})"
    even = "a head's width must be even" if factor == 1 else "that part must be even"
    if "head_dim" in config:
        good = next(w for w in range(width + 1, 4 * width + 4) if int(w * factor) % 2 == 0)
        what = "must be even" if factor == 1 else f"makes heads {width} wide{part}, which must be even"
        return TinyProblem("value", "head_dim", f"`head_dim = {width}` {what}: RoPE turns pairs of dimensions",
                           f"write e.g. `head_dim = {good}`")
    keys = {a: written_key(config, a, aliases) for a in ("hidden_size", "num_attention_heads")}
    said = {a: f"`{k} = {v}`" if k else f"`{aliases.get(a, a)}` ({v}, the default)"
            for (a, k), v in zip(keys.items(), (hidden, heads))}
    fix = keys["hidden_size"] or aliases.get("hidden_size", "hidden_size")
    good = next(h for h in range(hidden + heads, hidden + 8 * heads, heads) if int(h // heads * factor) % 2 == 0)
    return TinyProblem("value", keys["hidden_size"] or keys["num_attention_heads"],
                       f"{said['hidden_size']} over {said['num_attention_heads']} makes heads {width} wide{part}: "
                       f"RoPE turns pairs of dimensions, so {even}", f"write e.g. `{fix} = {good}`")


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def unused_rope_problem(config: Mapping[str, Any], line: str,
                        builds: Callable[[str, dict[str, Any]], bool]) -> TinyProblem | None:
    """transformers' warning ``line`` that it ignores entries of the spec's ``rope_scaling`` (its message says
    `rope_parameters`), put at the first such entry, with a value that is used: the same record with a
    ``rope_type`` (of :data:`ROPE_TYPES`) under which ``builds(key, record)`` finds every entry used, else the
    record without the ignored entries. None when the line is about no entry the spec wrote."""
    found = _UNUSED_ROPE.search(line)
    key = next((k for k in _ROPE_KEYS if isinstance(config.get(k), dict)), None)
    if found is None or key is None:
        return None
    record: dict[str, Any] = config[key]
    unused = [k for k in record if k in literal_eval(found.group(2))]
    if not unused:
        return None
    rope_type = found.group(1)
    named = "rope_type" in record or "type" in record
    what = f"`rope_type = {shown(rope_type)}`" if named else "the default RoPE (no `rope_type`)"
    listed = ", ".join(f"`{k}`" for k in unused)
    typed = None if named else next((t for t in ROPE_TYPES if builds(key, {"rope_type": t, **record})), None)
    kept = {k: v for k, v in record.items() if k not in unused}
    if typed is not None:
        fix = f"write `{key} = {written({'rope_type': typed, **record})}`, or remove {listed}"
    else:
        fix = f"write `{key} = {written(kept)}`" if kept else f"remove `{key}`"
    return TinyProblem("ignored", key, f"{listed} in `{key}` {'is' if len(unused) == 1 else 'are'} not used by "
                       f"{what}: transformers ignores {'it' if len(unused) == 1 else 'them'}", fix, entry=unused[0])


def written(record: Mapping[str, Any]) -> str:
    """A record as the spec writes it: ``{rope_type = "linear", factor = 2.0}``."""
    return "{" + ", ".join(f"{k} = {shown(v)}" for k, v in record.items()) + "}"
