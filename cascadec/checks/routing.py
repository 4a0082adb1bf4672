"""Routes by a data field against local data: routes no row takes (CAS323), rows with no route (CAS324).

The route key of a row is computed as the runtime does (`runtime.routing.route_key` on the Sample that
`cascadec.datarows.meta_of` describes): ``answer``/``prompt``/``id`` or a column path of the row's meta.
Hub datasets and reasoning-gym sources are not read here; the runtime counts rows per route in its metrics.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.contract.datarows import ANSWER, PROMPT, columns, meta_of
from cascadec.diagnostics import Diagnostic, Span
from cascadec.model import DataIn
from cascadec.routes import DEFAULT
from cascadec.sources import FILE_KINDS
from cascadec.contract.tables import MISSING, TableError, get_path, read_table

_MAX_ROWS = 100_000


def _rows(data: DataIn) -> list[dict[str, Any]] | None:
    """The rows of a local source (None when not local or not readable: CAS320-322 report that)."""
    if data.kind == "inline":
        return list(data.rows)
    if data.kind not in FILE_KINDS or data.kind == "hf_disk" or not os.path.exists(data.path or ""):
        return None
    try:
        return read_table(data.path or "", data.kind, data.split, limit=None if data.split else _MAX_ROWS)
    except (TableError, OSError, ValueError):
        return None


def _key(row: dict[str, Any], fields: dict[str, str], field: str) -> str | None:
    cols = columns(fields)
    if field in (ANSWER, PROMPT):
        value = get_path(row, cols[field])
    else:
        value = get_path(meta_of(row, fields), field)
    return None if value is MISSING or value is None else str(value)


def _rows_word(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _report(what: str, field: str, routes: dict[str, Span], span: Span, counts: Counter,
            sources: str) -> Iterator[Diagnostic]:
    unused = [k for k in routes if k != DEFAULT and counts[k] == 0]
    for key in unused:
        seen = ", ".join(f"`{v}`" for v, _ in counts.most_common(5) if v is not None) or "none"
        yield make("CAS323", f"route `{key}` of {what} takes no row of {sources}", routes[key],
                   label=f"no row has `{field}` = `{key}`", notes=(f"values of `{field}` seen: {seen}",),
                   help="fix the value or the field, or remove the route")
    lost = {v: n for v, n in counts.items() if v not in routes}
    if lost and DEFAULT not in routes:
        shown = ", ".join(f"`{v}` ({_rows_word(n)})" if v is not None else f"no `{field}` ({_rows_word(n)})"
                          for v, n in sorted(lost.items(), key=lambda kv: -kv[1])[:5])
        total = sum(lost.values())
        yield make("CAS324", f"{_rows_word(total)} of {sources} {'has' if total == 1 else 'have'} no route in {what}",
                   span,
                   label="no route and no `default`", notes=(f"unrouted: {shown}",),
                   help="add a route for these values or a `default = ...` route")


def _count(sources: list[DataIn], field: str) -> Counter | None:
    counts: Counter = Counter()
    for data in sources:
        rows = _rows(data)
        if rows is None:
            return None
        counts.update(_key(r, data.fields, field) for r in rows if isinstance(r, dict))
    return counts


def _reward_routes(ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    for name, d in ctx.spec.domains.items():
        if d.reward is None or d.reward.kind != "route":
            continue
        span = ctx.span_of(("domains", name, "reward"), ctx.domains()[name].name.span)
        counts = _count([d.train], d.reward.args["by"])
        if counts is not None:
            routes = dict.fromkeys(d.reward.args["keys"], span)
            yield from _report(f"the reward of `{name}`", d.reward.args["by"], routes, span, counts,
                               f"`{name}`'s training data")


def _teacher_routes(ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    for i, (st, node) in enumerate(zip(ctx.spec.stages, ctx.view.stages)):
        if st.teacher_field is None:
            continue
        counts = _count([ctx.spec.domains[d].train for d in st.domains if d in ctx.spec.domains], st.teacher_field)
        if counts is not None:
            routes = {k: ctx.span_of(("stages", i, "teachers", k), node.name.span) for k in st.teachers}
            yield from _report(f"the teachers of `{st.name}`", st.teacher_field, routes, node.name.span, counts,
                               f"`{st.name}`'s training data")


def check_routes(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS323/CAS324 for every field-routed reward and teachers block whose data is local."""
    yield from _reward_routes(ctx)
    yield from _teacher_routes(ctx)
