"""AST values → plain values, one converter per value type (CAS200 types, CAS202 units, CAS104 unknown units)."""

from __future__ import annotations

import math
from typing import Any, Callable

from cascadec import ast
from cascadec.codes import make
from cascadec.contract.kinds import Key
from cascadec.contract.params import SCHEDULE_KINDS
from cascadec.contract.suggest import did_you_mean, listed
from cascadec.diagnostics import Diagnostic, Span
from cascadec.model.keys import BOOLS, COUNTED_BY
from cascadec.units import as_number, scale, unit_fix, unit_missing


class Invalid(Exception):
    """A value that cannot be converted; carries its diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _bad(code: str, message: str, span: Span, help: str | None = None, label: str = "") -> Invalid:
    return Invalid(make(code, message, span, label=label, help=help))


def _shape(v: ast.Value) -> str:
    return {ast.Num: "a number", ast.Str: "a string", ast.Metric: "a metric", ast.Ident: "a name",
            ast.ListV: "a list", ast.TupleV: "a tuple", ast.Call: "a call", ast.Record: "a record",
            ast.Schedule: "a schedule"}.get(type(v), "a value")


def _quantity(v: ast.Num, dim: str | None = None) -> tuple[str | None, int | float]:
    """``(dimension, value in base units)``; an unknown unit is CAS104, with the unit of dimension ``dim`` (any
    when None) it most likely means."""
    try:
        found, value = scale(v.value, v.unit)
    except KeyError:
        raise _bad("CAS104", f"unknown unit `{v.unit}` in `{v.text}`", v.span,
                   help=unit_fix(v.text, v.unit or "", dim)) from None
    if not math.isfinite(value) or abs(value) > 2**63 - 1:
        raise _bad("CAS201", f"`{v.text}` is too large", v.span,
                   help="a number in a spec, whatever its key, must be at most 2^63 - 1 (about 9.2e18)")
    return found, value


def _in_units(v: ast.Value, key: str, dim: str, noun: str, dim_noun: str, example: str,
              units: str) -> int | float:
    """The value of ``v`` in base units when it is a plain number or a ``dim`` quantity (CAS200, CAS202)."""
    if not isinstance(v, ast.Num):
        raise _bad("CAS200", f"`{key}` takes {noun}, found {_shape(v)}", v.span, help=f"write e.g. `{key} = {example}`")
    found, value = _quantity(v, dim)
    if found not in (None, dim):
        raise _bad("CAS202", f"`{key}` takes {dim_noun}, found a {found} quantity `{v.text}`", v.span, help=units)
    return value


def to_int(v: ast.Value, key: str) -> int:
    value = _in_units(v, key, "count", "an integer", "a count", "8",
                      "use a count unit (`k`, `Ki`, `M`) or a plain number")
    if isinstance(value, float) and not value.is_integer():
        raise _bad("CAS200", f"`{key}` takes an integer, found `{v.text}`", v.span,  # type: ignore[union-attr]
                   help=f"round it, e.g. `{key} = {int(round(value))}`")
    return int(value)


def to_float(v: ast.Value, key: str) -> float:
    if not isinstance(v, ast.Num):
        raise _bad("CAS200", f"`{key}` takes a number, found {_shape(v)}", v.span, help=f"write e.g. `{key} = 0.5`")
    _, value = _quantity(v)
    if v.unit is not None:
        raise _bad("CAS202", f"`{key}` takes a plain number, found the quantity `{v.text}`", v.span,
                   help="drop the unit")
    return float(value)


def to_bool(v: ast.Value, key: str, help: str | None = None) -> bool:
    """``on``/``off`` (and the other words of `BOOLS`); raises `Invalid` (CAS200, with ``help`` when given)."""
    if isinstance(v, ast.Ident) and v.name in BOOLS:
        return BOOLS[v.name]
    raise _bad("CAS200", f"`{key}` takes `on` or `off`, found {_shape(v)}", v.span,
               help=help or f"write `{key} = on`")


def to_enum(v: ast.Value, key: str, choices: tuple[str, ...]) -> str:
    name = v.name if isinstance(v, ast.Ident) else v.value if isinstance(v, ast.Str) else None
    if name in choices:
        return name
    shown = f"`{name}`" if name is not None else _shape(v)
    if isinstance(v, ast.Num) and key in COUNTED_BY:
        count, what = COUNTED_BY[key]
        raise _bad("CAS200", f"`{key}` cannot be {shown}", v.span, help=f"did you mean `{count} = {v.text}`? "
                   f"`{key}` names {what} ({', '.join(f'`{c}`' for c in choices[:3])}, ...)")
    raise _bad("CAS200", f"`{key}` cannot be {shown}", v.span,
               help=did_you_mean(name or "", choices, "values") if name else
               "valid values: " + listed(choices))


def to_str(v: ast.Value, key: str) -> str:
    if isinstance(v, ast.Str):
        return v.value
    raise _bad("CAS200", f"`{key}` takes a string, found {_shape(v)}", v.span, help=f'write `{key} = "..."`')


def to_pair(v: ast.Value, key: str) -> tuple[float, float]:
    if isinstance(v, ast.TupleV) and len(v.items) == 2:
        return (to_float(v.items[0], key), to_float(v.items[1], key))
    raise _bad("CAS200", f"`{key}` takes a pair of numbers, found {_shape(v)}", v.span,
               help=f"write e.g. `{key} = (0.9, 0.95)`")


def to_memory(v: ast.Value, key: str) -> int:
    units = "use `B`, `KB`, `MB`, `GB`, `KiB`, `MiB`, `GiB` or `TiB`"
    value = int(_in_units(v, key, "memory", "a memory size", "a memory size", "80GB", units))
    assert isinstance(v, ast.Num)  # _in_units refuses anything else
    if unit_missing("memory", v.unit):
        raise _bad("CAS202", f"`{key}` takes a memory size with its unit, found the plain number `{v.text}`",
                   v.span, help=f"write e.g. `{key} = {v.text}GB` ({units})")
    return value


def to_schedule(v: ast.Value, key: str) -> dict[str, Any]:
    """``lr`` values → the fields of `plan.Schedule` that the expression sets."""
    if isinstance(v, ast.Num):
        return {"peak": to_float(v, key), "end": None, "kind": "constant"}
    if not isinstance(v, ast.Schedule):
        raise _bad("CAS200", f"`{key}` takes a learning rate or schedule, found {_shape(v)}", v.span,
                   help="write e.g. `lr = 3e-6` or `lr = 5e-5 -> 5e-6 cosine warmup 200`")
    out: dict[str, Any] = {"peak": to_float(v.peak, key), "end": None, "kind": "constant"}
    if v.end is not None and v.kind is not None:
        out["end"] = to_float(v.end, key)
        out["kind"] = to_enum(v.kind, "schedule kind", SCHEDULE_KINDS)
    if v.warmup is not None:
        out["warmup"] = to_int(v.warmup, "warmup")
        out["warmup_start"] = to_float(v.warmup_from, "from") if v.warmup_from is not None else 0.0
    return out


def to_plain(v: ast.Value, key: str) -> Any:
    """A free-form argument (reward args, gym args, tiny-model config, inline rows) as JSON data.

    Quantities become base units (seconds, bytes, counts); ``field("col")`` becomes ``{"field": "col"}``.
    """
    if isinstance(v, ast.Num):
        value = _quantity(v)[1]
        return as_number(value) if v.unit else (int(value) if v.is_int else value)
    if isinstance(v, ast.Str):
        return v.value
    if isinstance(v, ast.Ident):
        return BOOLS.get(v.name, v.name)
    if isinstance(v, ast.Metric):
        return f"{v.kind}@{v.k}"
    if isinstance(v, ast.ListV):
        if v.items and all(isinstance(i, ast.Pair) for i in v.items):
            return {i.key.name: to_plain(i.value, key) for i in v.items}  # type: ignore[union-attr]
        if any(isinstance(i, ast.Pair) for i in v.items):
            raise _bad("CAS200", f"`{key}` mixes `name: value` pairs with plain items", v.span,
                       help="write every item as `name: value`, or none")
        return [to_plain(i, key) for i in v.items]  # type: ignore[arg-type]
    if isinstance(v, ast.TupleV):
        return [to_plain(i, key) for i in v.items]
    if isinstance(v, ast.Record):
        return {e.key.name: to_plain(e.value, e.key.name) for e in v.entries}
    if isinstance(v, ast.Call) and v.func.name == "field" and len(v.args) == 1 and not v.kwargs \
            and isinstance(v.args[0], ast.Str):
        return {"field": v.args[0].value}
    raise _bad("CAS200", f"`{key}` cannot be {_shape(v)} here", v.span,
               help='arguments take numbers, strings, names, lists, records or `field("column")`')


def convert(v: ast.Value, key: str, spec: Key) -> Any:
    """``v`` converted by the converter of ``spec.kind`` (`cascadec.contract.kinds.Key`)."""
    if spec.kind == "enum":
        return to_enum(v, key, spec.choices)
    return _CONVERTERS[spec.kind](v, key)


# an `avg@K` example that lints clean: greedy samples at the default temperature 0 are identical (CAS405)
SAMPLED_METRIC = "`metric = avg@4  temperature = 0.6`"


def to_metric(v: ast.Value, key: str) -> dict[str, Any]:
    if isinstance(v, ast.Metric) and v.kind in ("pass", "avg"):
        if v.kind == "pass" and v.k == 1:
            return {"metric": "pass@1", "k": 1}
        return {"metric": f"{v.kind}@k", "k": v.k}
    raise _bad("CAS200", f"`{key}` takes `pass@1`, `avg@K` or `pass@K`", v.span, help=f"write e.g. {SAMPLED_METRIC}")



def to_retention(v: ast.Value, key: str) -> dict[str, Any]:
    """``keep = 3`` (the last 3 snapshots), ``keep = best(by math.gsm)`` (the best by that eval) or
    ``keep = best(2 by math.gsm)`` (both) → the fields of `plan.Retention`."""
    if isinstance(v, ast.Num):
        return {"last": to_int(v, key)}
    if isinstance(v, ast.Call) and v.func.name == "best" and v.by is not None and not v.kwargs and len(v.args) <= 1:
        last = to_int(v.args[0], key) if v.args else 0
        return {"last": last, "domain": v.by.first.name, "eval": v.by.second.name}
    raise _bad("CAS200", f"`{key}` takes a count or `best(by DOMAIN.EVAL)`, found {_shape(v)}", v.span,
               help=f"write `{key} = 3`, `{key} = best(by math.gsm)` or `{key} = best(2 by math.gsm)`")


def _overlong(v: ast.Value, key: str) -> dict[str, Any]:
    from cascadec.overlong import to_overlong  # builds on this module's converters

    return to_overlong(v, key)


def _chat(v: ast.Value, key: str) -> dict[str, Any]:
    from cascadec.chatspec import to_override  # builds on this module's converters

    return to_override(v, key)


def _server(v: ast.Value, key: str) -> dict[str, Any]:
    from cascadec.servers import to_rollout  # builds on the call converters

    return to_rollout(v, key)


def _servers(v: ast.Value, key: str) -> dict[str, Any]:
    from cascadec.servers import to_servers

    return to_servers(v, key)


_CONVERTERS: dict[str, Callable[[ast.Value, str], Any]] = {
    "int": to_int, "float": to_float, "bool": to_bool, "pair": to_pair, "memory": to_memory,
    "schedule": to_schedule, "metric": to_metric, "retention": to_retention, "overlong": _overlong, "chat": _chat,
    "server": _server, "servers": _servers,
}
