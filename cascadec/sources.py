"""Data source calls -> `DataSource` dicts: `jsonl(...)`, `parquet(...)`, `hf(...)`, `gym(...)`, `inline(...)`, ...

Every keyword of a source is one the runtime honours; an unknown keyword is CAS301 with did-you-mean (it
used to become a column mapping silently). Column roles (`prompt`, `answer`, `completion`, `messages`,
`id`) name a column or a dotted path into nested columns; other roles that rewards read with
`field("...")` are mapped with `columns = {tests = "test_cases"}`. A `split` is parsed here (CAS200 when it
is not `NAME` or `NAME[START:STOP]`), so a typo is not found only when the data loads.
"""

from __future__ import annotations

import os
from typing import Any

from cascadec import ast
from cascadec.contract.datarows import ANSWER, COMPLETION, MESSAGES, PROMPT
from cascadec.model.calls import _call, _one_string, _resolve
from cascadec.model.convert import _bad, to_bool, to_int, to_plain, to_str
from cascadec.contract.suggest import suggest
from cascadec.contract.tables import TableError, parse_split

FILE_KINDS = ("jsonl", "parquet", "arrow", "csv", "json", "hf_disk")
DATA_KINDS = (*FILE_KINDS, "hf", "gym", "inline")
ROLES = (PROMPT, ANSWER, COMPLETION, MESSAGES, "id")
_COMMON = ("split", "seed", "size", "shuffle", "columns")


def keywords(kind: str) -> tuple[str, ...]:
    """The keywords a source kind accepts (gym: its generator's config keys too, checked by CAS319)."""
    if kind == "inline":
        return ()
    if kind == "gym":
        return ("size", "seed")
    return (*ROLES, *_COMMON, *(("subset",) if kind == "hf" else ()))


def _inline(call: ast.Call) -> dict[str, Any]:
    if len(call.args) != 1 or call.kwargs or not isinstance(call.args[0], ast.ListV) \
            or not all(isinstance(r, ast.Record) for r in call.args[0].items):
        raise _bad("CAS200", "`inline(...)` takes one list of records", call.span,
                   help='write `inline([{prompt = "1+1", answer = "2"}])`')
    if not call.args[0].items:
        raise _bad("CAS201", "`inline([])` holds no rows", call.args[0].span, label="empty list",
                   help='add at least one row, e.g. `inline([{prompt = "1+1", answer = "2"}])`')
    return {"kind": "inline", "rows": [to_plain(r, "rows") for r in call.args[0].items]}  # type: ignore[attr-defined]


def _columns(v: ast.Value) -> dict[str, str]:
    if not isinstance(v, ast.Record):
        raise _bad("CAS200", "`columns` takes a record of role = \"column\"", v.span,
                   help='write e.g. `columns = {tests = "input_output", source = "meta.origin"}`')
    return {e.key.name: to_str(e.value, e.key.name) for e in v.entries}


def _split(v: ast.Value) -> str:
    text = to_str(v, "split")
    try:
        parse_split(text)
    except TableError as e:
        message, _, hint = str(e).partition("\nhelp: ")
        raise _bad("CAS200", message, v.span, label="not a split", help=hint) from None
    return text


def _keyword(out: dict[str, Any], kind: str, kw: ast.Kwarg) -> None:
    name = kw.key.name
    if name not in keywords(kind) and kind != "gym":
        close = suggest(name, keywords(kind))
        raise _bad("CAS301", f"data source `{kind}(...)` has no argument `{name}`", kw.key.span,
                   label="unknown argument", help=f"did you mean `{close}`?" if close else
                   "arguments: " + ", ".join(f"`{k}`" for k in keywords(kind)) +
                   f'; map another column with `columns = {{{name} = "..."}}`')
    if name in ("seed", "size"):
        out[name] = to_int(kw.value, name)
    elif name == "shuffle":
        out[name] = to_bool(kw.value, name)
    elif name == "split":
        out[name] = _split(kw.value)
    elif name == "subset":
        out[name] = to_str(kw.value, name)
    elif name == "columns":
        out.setdefault("fields", {}).update(_columns(kw.value))
    elif kind == "gym":
        out.setdefault("args", {})[name] = to_plain(kw.value, name)
    else:
        out.setdefault("fields", {})[name] = to_str(kw.value, name)


def to_data(v: ast.Value, key: str) -> dict[str, Any]:
    """The `DataSource` dict of a data source call (paths made absolute relative to the spec's file)."""
    call = _call(v, "data source", DATA_KINDS, 'jsonl("data/train.jsonl")')
    kind = call.func.name
    if kind == "inline":
        return _inline(call)
    first = _one_string(call, "a name" if kind in ("gym", "hf") else "a path")
    out: dict[str, Any] = {"kind": kind}
    if kind in ("gym", "hf"):
        out["name"] = first
    else:
        out["path"] = _resolve(first, call.args[0].span)
    for kw in call.kwargs:
        _keyword(out, kind, kw)
    if kind == "hf" and os.path.isabs(first):
        raise _bad("CAS200", "`hf(...)` takes a hub id such as `org/name`", call.args[0].span,
                   help=f'read a local dataset with parquet("{first}") or hf_disk("{first}")')
    return out
