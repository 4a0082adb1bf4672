"""`overlong = none | filter | penalty | penalty(-1) | soft(buffer = 4k, factor = 1.0)`: the overlong rule of a
domain or a stage, converted to the plan's four fields (`runtime.losses.overlong` applies them).

`penalty(V)` sets a truncated rollout's reward to V (0 by default; negative where rewards can be negative);
`soft(...)` is DAPO's soft overlong punishment over the last `buffer` tokens before `max_response`, times
`factor` (arXiv 2503.14476, Eq. 13).
"""

from __future__ import annotations

from typing import Any

from cascadec import ast
from cascadec.model.calls import _call
from cascadec.model.convert import _bad, to_float, to_int
from cascadec.contract.suggest import did_you_mean

RULES = ("none", "penalty", "filter", "soft")
FIELDS = ("overlong", "overlong_value", "overlong_buffer", "overlong_factor")
_EXAMPLE = "`overlong = penalty(-1)` or `overlong = soft(buffer = 4k, factor = 1.0)`"


def to_overlong(v: ast.Value, key: str) -> dict[str, Any]:
    """The plan fields of an overlong rule (CAS200 for a bad form, CAS203 for `soft` without `buffer`)."""
    out: dict[str, Any] = {"overlong_value": 0.0, "overlong_buffer": 0, "overlong_factor": 1.0}
    if isinstance(v, ast.Ident):
        if v.name not in RULES:
            raise _bad("CAS200", f"`{key}` cannot be `{v.name}`", v.span, label="not an overlong rule",
                       help=did_you_mean(v.name, RULES, "values"))
        if v.name == "soft":
            raise _bad("CAS203", "`soft` needs its length window", v.span, label="no `buffer`",
                       help="write `overlong = soft(buffer = 4k, factor = 1.0)`")
        return {"overlong": v.name, **out}
    call = _call(v, "overlong rule", ("penalty", "soft"), "penalty(-1)")
    named = {kw.key.name: kw for kw in call.kwargs}
    allowed = {"penalty": ("value",), "soft": ("buffer", "factor")}[call.func.name]
    for name, kw in named.items():
        if name not in allowed:
            raise _bad("CAS301", f"`{call.func.name}(...)` has no argument `{name}`", kw.key.span,
                       label="unknown argument", help=did_you_mean(name, allowed, "arguments"))
    if call.func.name == "penalty":
        value = call.args[0] if call.args else named["value"].value if "value" in named else None
        if len(call.args) > 1 or (call.args and "value" in named):
            raise _bad("CAS200", "`penalty(...)` takes one value", call.span, help="write `overlong = penalty(-1)`")
        out["overlong_value"] = to_float(value, "value") if value is not None else 0.0
        return {"overlong": "penalty", **out}
    if call.args or "buffer" not in named:
        raise _bad("CAS203", "`soft(...)` needs `buffer = N` (tokens before `max_response`)", call.span,
                   label="no `buffer`", help="write `overlong = soft(buffer = 4k, factor = 1.0)`")
    out["overlong_buffer"] = to_int(named["buffer"].value, "buffer")
    if "factor" in named:
        out["overlong_factor"] = to_float(named["factor"].value, "factor")
    if out["overlong_buffer"] <= 0 or out["overlong_factor"] <= 0:
        raise _bad("CAS201", "`soft(...)` needs a positive `buffer` and `factor`", call.span,
                   help="write `overlong = soft(buffer = 4k, factor = 1.0)`")
    return {"overlong": "soft", **out}
