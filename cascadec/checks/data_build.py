"""CAS328: a local data source the run could not build from its first rows.

`cascadec/checks/data.py` reads the first row of each local file (CAS320-CAS322) on every compile, editors
included. `cascadec lint` and `cascadec run` also build each source as the runtime will (`BUILD_CHECKS`), from
its first `LINT_ROWS` rows: a later `jsonl` line that is not a JSON object, a
row without a prompt or (for an SFT stage) without a target, a mapped column absent from a later row, and an
`hf_disk(...)` dataset that does not load or lacks the split. `gym(...)` sources are CAS327, `inline(...)` rows
are all read by CAS321 already, and `hf(...)` hub datasets are read from the local cache at run time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.checks.data import _JSON_TYPES, _shown, _Use, _uses
from cascadec.codes import make
from cascadec.contract.datarows import prompt_problem, sft_target_problem
from cascadec.contract.tables import TableError, has_path, read_table
from cascadec.diagnostics import Diagnostic, Span
from cascadec.sources import FILE_KINDS

# rows read per source: enough to find a bad row in a hand-made file, cheap on a large one
LINT_ROWS = 1000


def _jsonl_rows(path: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value or the JSONDecodeError) of the first `LINT_ROWS` non-empty lines."""
    read = 0
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:  # records end at "\n" only
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                yield lineno, e
            read += 1
            if read == LINT_ROWS:
                return


def _row_problem(use: _Use, row: Any) -> str | None:
    """Why the runtime would reject ``row`` of ``use`` (None: it would not)."""
    if isinstance(row, json.JSONDecodeError):
        return f"malformed JSON ({row.msg} at column {row.colno})"
    if isinstance(row, RecursionError):
        return "nests too deeply to parse"
    if not isinstance(row, dict):
        return f"is {_JSON_TYPES.get(type(row), 'not an object')}, not a JSON object"
    for role, column in use.data.fields.items():
        if not has_path(row, column):
            return f"has no column `{column}` (mapped to `{role}`)"
    problem = prompt_problem(row, use.data.fields)
    if problem is not None:
        return (f"prompt column `{problem.column}` is not a string" if problem.kind == "not_string"
                else f"has no prompt (no `{problem.column}` column)")
    if use.sft_stage is not None and sft_target_problem(row, use.data.fields) is not None:
        return f"has no `completion` or `answer` for SFT stage `{use.sft_stage.name}` to train on"
    return None


def _kwarg_span(use: _Use, name: str) -> Span:
    return next((kw.value.span for kw in use.call.kwargs if kw.key.name == name), use.call.args[0].span)


def _build(use: _Use) -> Diagnostic | None:
    path, kind, split = use.data.path or "", use.data.kind, use.data.split
    shown = _shown(path)
    try:
        if kind == "jsonl":
            # the first line is CAS321/CAS322's
            rows = [(f"`{shown}:{n}`", r) for n, r in list(_jsonl_rows(path))[1:]]
        else:
            read = read_table(path, "arrow" if kind == "hf_disk" else kind, split, limit=LINT_ROWS)
            first = 0 if kind == "hf_disk" else 1  # hf_disk's first row is read only here
            rows = [(f"row {i + 1} of `{shown}`", r) for i, r in enumerate(read)][first:]
    except TableError as e:
        if kind != "hf_disk":
            return None  # the first-row check reads tables the same way and reported it (CAS322)
        message, _, hint = str(e).replace(path, shown).partition("\nhelp: ")
        span = _kwarg_span(use, "split") if "split" in message else use.call.args[0].span
        if "holds no arrow files" in message:
            hint = ("`hf_disk(...)` reads a folder written by `datasets`' `save_to_disk`; read other files with "
                    "`parquet(...)`, `jsonl(...)`, `csv(...)` or `json(...)`")
        return make("CAS328", f"the run cannot read {kind} data `{shown}`: {message}", span, label="cannot build",
                    help=hint or "fix the path or the split")
    except (OSError, ValueError, ImportError) as e:
        return make("CAS328", f"the run cannot read {kind} data `{shown}`: {str(e).splitlines()[0] if str(e) else e!r}",
                    use.call.args[0].span, label="cannot build", help="give a path the runtime can read")
    bad = [(where, problem) for where, row in rows if (problem := _row_problem(use, row)) is not None]
    if not bad:
        return None
    where, problem = bad[0]
    listed = ", ".join(w for w, _ in bad[1:6]) + (", ..." if len(bad) > 6 else "")
    return make("CAS328", f"{where} {problem}: the run stops when it loads this row", use.call.args[0].span,
                label="bad row in this data",
                notes=(f"{len(bad)} of the first {len(rows) + (kind == 'jsonl')} rows are bad; also {listed}",)
                if len(bad) > 1 else (),
                help="fix or remove the row (every row needs what the first row has; docs/language.md, Domains)")


def check_data_builds(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS328 for every local train or eval source whose first `LINT_ROWS` rows the runtime cannot load."""
    for use in _uses(ctx):
        if use.data.kind in FILE_KINDS and os.path.exists(use.data.path or ""):
            found = _build(use)
            if found is not None:
                yield found
