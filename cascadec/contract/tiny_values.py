"""The values of one ``tiny(NAME, key = value)`` keyword, each checked on its own (`cascadec.contract.tiny`):
its type against the config class's default, the ranges of keys whose meaning fixes one (a RoPE base, a norm
epsilon, a dropout), and the config class's own validator of that field, whose message is put in the spec's
words. Transformers accepts ``rope_theta = -1`` or ``rms_norm_eps = 0`` and the model's first logits are
finite: training then gives NaN losses, so these are refused before anything is built.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

# Keys whose value is a count or a width: zero or less makes no model (transformers fails later with
# "negative dimension" or builds nothing), so they are refused up front with the key's name.
_SIZE_KEY = re.compile(r"(size|dim|heads|layers|positions|embeddings|experts|^num_|^n_)")
# Keys of the same spelling in every config class, whose meaning fixes their range: (pattern, lowest, whether
# the lowest is allowed, highest, whether the highest is allowed, what the key is). Found in the float fields
# of transformers' causal-LM configs; RoPE keys are also checked inside `rope_scaling`/`rope_parameters`.
_RANGES: tuple[tuple[re.Pattern[str], float, bool, float, bool, str], ...] = (
    (re.compile(r"(^|_)theta$"), 0.0, False, math.inf, False, "a RoPE base"),
    (re.compile(r"(^|_)(eps|epsilon)$"), 0.0, False, math.inf, False, "a normalisation epsilon"),
    (re.compile(r"soft_?cap(ping)?$"), 0.0, False, math.inf, False, "a logit soft cap"),
    (re.compile(r"^(initializer_range|init_std)$"), 0.0, True, math.inf, False,
     "the standard deviation of the initial weights"),
    (re.compile(r"(dropout|pdrop)(_prob|_p)?$"), 0.0, True, 1.0, False, "a dropout probability"),
    (re.compile(r"^partial_rotary_factor$"), 0.0, False, 1.0, True, "the share of each head that RoPE turns"),
    (re.compile(r"^factor$"), 1.0, True, math.inf, False, "a RoPE scaling factor"),
    # a window of no tokens masks every position (mistral's forward then fails with a tensor-size error)
    (re.compile(r"^sliding_window$"), 1.0, True, math.inf, False, "how many tokens a position attends to"),
)
_NESTED = ("rope_scaling", "rope_parameters")
# transformers' field validators (`huggingface_hub.dataclasses.strict`): "Validation error for field 'x':
# ValueError: Value must be greater or equal to 0.0 and smaller or equal to 1.0, got -1.0."
_FIELD_ERROR = re.compile(r"Validation error for field '(\w+)':\s*(\w+): (.*)", re.S)
_WORDS = (("greater or equal to", "at least"), ("smaller or equal to", "at most"), ("greater than", "more than"),
          ("smaller than", "less than"))


@dataclass(frozen=True)
class TinyProblem:
    """What is wrong with a ``tiny(...)`` config: ``on`` says what is at fault (the model type, an unknown key,
    a key's value, a setting transformers ignores, one it warns about but uses, or the config as a whole),
    ``key`` the keyword where one is to blame, ``message`` one line, ``hint`` the fix, ``entry`` the entry of
    the key's record to blame (`factor` of ``rope_scaling = {factor = 2.0}``), if one."""

    on: Literal["type", "key", "value", "ignored", "warned", "config"]
    key: str | None
    message: str
    hint: str
    entry: str | None = None


def value_problem(key: str, value: Any, default: Any, example: Any) -> TinyProblem | None:
    """What is wrong with ``key = value`` alone: ``default`` is the config class's default (its type is the
    expected one), ``example`` the value the tiny model has when the key is left out (quoted in the hint)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            return TinyProblem("value", key, f"`{key} = {shown(value)}` must be true or false",
                               f"write `{key} = true` or `{key} = false`")
        return None
    if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
        return TinyProblem("value", key, f"`{key} = {shown(value)}` must be an integer",
                           f"write a whole number, e.g. `{key} = {shown(example)}`")
    if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return TinyProblem("value", key, f"`{key} = {shown(value)}` must be a number",
                           f"write e.g. `{key} = {shown(example)}`")
    if isinstance(default, int) and default > 0 and _SIZE_KEY.search(key) and value <= 0:
        return TinyProblem("value", key, f"`{key} = {value}` must be a positive size",
                           f"give a whole number of at least 1, e.g. `{key} = {shown(example)}`")
    return range_problem(key, value, example)


def range_problem(key: str, value: Any, example: Any, inside: str | None = None) -> TinyProblem | None:
    """``key = value`` (an entry of the record ``inside`` when given) out of the range its meaning fixes."""
    if isinstance(value, dict) and key in _NESTED:
        return next((p for k, v in value.items() if (p := range_problem(k, v, None, key)) is not None), None)
    for pattern, low, low_in, high, high_in, what in _RANGES:
        if not pattern.search(key) or (pattern.pattern == "^factor$" and inside is None):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):  # the class may not type it
            return TinyProblem("value", inside or key, f"`{key} = {shown(value)}` must be a number ({what})",
                               f"write e.g. `{key} = {shown(example)}`" if example is not None else "write a number")
        if (value > low or low_in and value == low) and (value < high or high_in and value == high):
            return None
        where = f"`{key} = {shown(value)}`" + (f" in `{inside}`" if inside else "")
        bound = ("positive" if not low_in else f"at least {low:g}") if high == math.inf else \
            f"{'at least' if low_in else 'more than'} {low:g} and {'at most' if high_in else 'less than'} {high:g}"
        fix = f"write e.g. `{key} = {shown(example)}`" if example is not None else \
            "give a positive value" if bound == "positive" else f"give a value {bound}"
        return TinyProblem("value", inside or key, f"{where} must be {bound} ({what})", fix)
    return None


def field_error(key: str, value: Any, error: BaseException, example: Any) -> TinyProblem | None:
    """The config class's validator's ``error`` about ``key`` alone, in the spec's words; None when it is about
    another field or the config as a whole."""
    found = _FIELD_ERROR.search(str(error))
    if found is None or found.group(1) != key:
        return None
    kind, detail = found.group(2), found.group(3).strip().rstrip(".")
    if kind == "ValueError" and detail.startswith("Value must be"):
        detail = detail.removeprefix("Value ").split(", got ")[0]
        for theirs, ours in _WORDS:
            detail = detail.replace(theirs, ours)
    elif kind == "TypeError":
        detail = "of another type: " + detail.replace(f"Field '{key}' ", "")
    return TinyProblem("value", key, f"`{key} = {shown(value)}` {detail}", f"write e.g. `{key} = {shown(example)}`")


def shown(value: Any) -> str:
    """A value as the spec writes it (``true``, ``"32"``), not as Python does."""
    return json.dumps(value)
