"""Routing rows by a data field, in the language.

Rewards: ``route(field("data_source"), when("openai/gsm8k", math_verify()), when(["apps", "taco"],
unit_tests(...), weight = 0.5), gsm8k = math_verify(), default = exact())`` -> a `RewardSpec` of kind
``route`` (``args.by``, ``args.keys``, one part and one weight per key; `runtime.routing.RoutedReward`).

Teachers: ``teachers { by = field("data_source")  math = sft  routes = [when("org/chat", rlhf_side,
weight = 0.5)]  default = multi_rl }`` -> ``Stage.teacher_field``, one teacher entry per field value and, for
routes written with a ``weight``, ``Stage.teacher_weights`` (the factor on those rows' distillation loss).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from cascadec import ast
from cascadec.model.convert import _bad, to_float

DEFAULT = "default"
_EXAMPLE = 'route(field("data_source"), when("openai/gsm8k", math_verify()), default = exact())'


def field_name(v: ast.Value, what: str) -> str:
    """The column of a ``field("col")`` value (CAS200 for anything else)."""
    if isinstance(v, ast.Call) and v.func.name == "field" and len(v.args) == 1 and isinstance(v.args[0], ast.Str) \
            and not v.kwargs:
        return v.args[0].value
    raise _bad("CAS200", f"{what} routes by a data field, written `field(\"column\")`", v.span,
               help='write e.g. `field("data_source")` (a dotted path reaches a nested column)')


def _values(v: ast.Value) -> list[str]:
    items = v.items if isinstance(v, ast.ListV) else [v]  # type: ignore[attr-defined]
    out = []
    for item in items:
        if not isinstance(item, (ast.Str, ast.Ident, ast.Num)):
            raise _bad("CAS200", "`when(...)` takes a field value (or a list of them) first", item.span,
                       help='write `when("openai/gsm8k", ...)` or `when(["a", "b"], ...)`')
        out.append(item.value if isinstance(item, ast.Str) else item.name if isinstance(item, ast.Ident)
                   else item.text)
    return out


def when_entries(call: ast.Call) -> tuple[list[str], ast.Value, float]:
    """(field values, target, weight) of ``when(VALUES, TARGET, weight = W)``."""
    extra = [kw for kw in call.kwargs if kw.key.name != "weight"]
    if len(call.args) != 2 or extra:
        raise _bad("CAS200", "`when(...)` takes a field value and a target, and optionally `weight = W`", call.span,
                   help='write `when("openai/gsm8k", math_verify())` or `when("apps", unit_tests(...), weight = 0.5)`')
    weight = next((to_float(kw.value, "weight") for kw in call.kwargs), 1.0)
    if weight <= 0:
        raise _bad("CAS201", f"a route's weight must be positive, found {weight:g}", call.kwargs[0].value.span,
                   help="give `weight` > 0")
    return _values(call.args[0]), call.args[1], weight


def _add(routes: dict[str, tuple[Any, float]], key: str, target: Any, weight: float, span: Any) -> None:
    if key in routes:
        raise _bad("CAS303", f"route `{key}` is given twice", span, label="second route", help="give each value one route")
    routes[key] = (target, weight)


def to_route(call: ast.Call, convert: Callable[[ast.Value, str], dict[str, Any]]) -> dict[str, Any]:
    """The `RewardSpec` dict of a ``route(...)`` reward; ``convert`` converts each route's reward."""
    if not call.args:
        raise _bad("CAS200", "`route(...)` needs the field to route by first", call.span, help=f"write `{_EXAMPLE}`")
    by = field_name(call.args[0], "`route(...)`")
    routes: dict[str, tuple[Any, float]] = {}
    for arg in call.args[1:]:
        if not (isinstance(arg, ast.Call) and arg.func.name == "when"):
            raise _bad("CAS200", "the routes of `route(...)` are `when(VALUE, REWARD)` or `NAME = REWARD`", arg.span,
                       help=f"write `{_EXAMPLE}`")
        values, target, weight = when_entries(arg)
        for value in values:
            _add(routes, value, convert(target, "reward"), weight, arg.span)
    for kw in call.kwargs:
        _add(routes, kw.key.name, convert(kw.value, "reward"), 1.0, kw.key.span)
    if not routes:
        raise _bad("CAS203", "`route(...)` has no routes", call.span, help=f"write `{_EXAMPLE}`")
    keys = list(routes)
    return {"kind": "route", "args": {"by": by, "keys": keys}, "parts": [routes[k][0] for k in keys],
            "weights": [routes[k][1] for k in keys]}


def _teacher_when(w: ast.Value) -> bool:
    return isinstance(w, ast.Call) and w.func.name == "when" and len(w.args) == 2 and isinstance(w.args[0], ast.Str) \
        and all(kw.key.name == "weight" for kw in w.kwargs)


def teacher_weights(block: ast.Teachers) -> list[tuple[str, ast.Value]]:
    """(route value, weight value) of each well-formed ``when("value", STAGE, weight = W)`` of a ``teachers``
    block; a malformed ``routes`` is reported by the checks."""
    out = []
    for a in block.assigns:
        if a.key.name == "routes" and isinstance(a.value, ast.ListV) and all(map(_teacher_when, a.value.items)):
            out += [(w.args[0].value, kw.value) for w in a.value.items for kw in w.kwargs]  # type: ignore
    return out


def teacher_weight(v: ast.Value) -> float:
    """A teacher route's weight: a finite number >= 0 (0 keeps the rows' metrics but not their gradient);
    CAS200 for anything but a number, CAS201 for a negative or non-finite one."""
    weight = to_float(v, "weight")
    if not math.isfinite(weight) or weight < 0:
        raise _bad("CAS201", f"a teacher route's weight must be a finite number >= 0, found {v.text}",  # type: ignore
                   v.span, help="give `weight` >= 0 (1 is the default; 0 takes the rows out of the loss)")
    return weight


def teacher_routes(block: ast.Teachers) -> tuple[ast.Assign | None, list[ast.Assign]]:
    """(the ``by = field(...)`` entry or None, the routes) of a ``teachers`` block; each
    ``routes = [when("value", STAGE), ...]`` entry becomes one route whose key is the value (at its span), so
    name and availability checks treat it as any other route. A malformed ``routes`` value is left as one
    route for the checks to report."""
    by = next((a for a in block.assigns if a.key.name == "by"), None)
    out: list[ast.Assign] = []
    for a in block.assigns:
        if a.key.name == "by":
            continue
        whens = a.value.items if a.key.name == "routes" and isinstance(a.value, ast.ListV) else None  # type: ignore
        if whens is None or not all(_teacher_when(w) for w in whens):
            out.append(a)
            continue
        for w in whens:
            key = w.args[0]
            out.append(ast.Assign(ast.Ident(key.value, key.span), w.args[1], w.span))
    return by, out
