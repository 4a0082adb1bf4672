"""Data sources against the files they name and the rows the runtime needs: CAS320 (a local data file or
dataset directory is missing), CAS321 (a mapped or needed column is absent), CAS322 (a row cannot be loaded).

A model check: it needs the resolved paths and each domain's stage kinds from the typed model. Of a
`jsonl` file it reads only the first non-empty line, so a large file costs one line. `hf_disk` directories
are only checked to exist; `gym` sources are CAS318/CAS319 (`cascadec/checks/gym.py`). What a row needs is
`cascadec.contract.datarows`, the runtime's rule.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.contract.datarows import ANSWER, COMPLETION, MESSAGES, PROMPT, prompt_problem, sft_target_problem
from cascadec.diagnostics import Diagnostic, Span
from cascadec.model.inputs import DataIn
from cascadec.sources import FILE_KINDS
from cascadec.contract.suggest import did_you_mean, suggest
from cascadec.contract.tables import TableError, get_path, has_path, read_table

# characters: a longer first row is left to the runtime rather than held in memory while compiling
_MAX_LINE = 64 * 2**20
# rows of a table file read to check its columns (the runtime checks every row again)
_HEAD_ROWS = 5
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


class _TooLong(Exception):
    """The first line is longer than `_MAX_LINE` characters."""


@dataclass(frozen=True)
class _Use:
    """One data source as the check sees it: the plan's view, the call that wrote it, and the first SFT stage
    that trains on its rows (None for evals and domains no SFT stage trains on)."""

    data: DataIn
    call: ast.Call
    sft_stage: ast.Ident | None


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it (as spans are shown), else as is."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _uses(ctx: CheckContext) -> Iterator[_Use]:
    assert ctx.spec is not None
    sft: dict[str, ast.Ident] = {}
    for st, node in zip(ctx.spec.stages, ctx.view.stages):
        if st.params.needs_targets:
            for name in st.domains:
                sft.setdefault(name, node.name)
    nodes = ctx.domains()
    names = Counter(d.name.name for d in ctx.view.domains)
    for name, domain in ctx.spec.domains.items():
        if names[name] > 1:
            continue  # defined twice (CAS303): the model's fields come from both blocks, the node from the first
        node = nodes[name]
        train = next(a.value for a in node.assigns if a.key.name == "train")
        if isinstance(train, ast.Call):
            yield _Use(domain.train, train, sft.get(name))
        calls = {ev.name.name: ev.data for ev in node.evals}
        for ev in domain.evals:
            if isinstance(calls[ev.name], ast.Call):
                yield _Use(ev.data, calls[ev.name], None)  # type: ignore[arg-type]


def gym_uses(ctx: CheckContext) -> Iterator[tuple[DataIn, ast.Call]]:
    """Every `gym(...)` train and eval source of a known generator, with the call that wrote it."""
    from cascadec.checks.gym import load_registry

    known = load_registry().generators
    for use in _uses(ctx):
        if use.data.kind == "gym" and use.data.name in known:
            yield use.data, use.call


def _missing_path(use: _Use) -> Diagnostic | None:
    """CAS320 when the path is missing but the directory meant to hold it exists."""
    path = use.data.path or ""
    parent = os.path.dirname(path)
    if os.path.exists(path) or not os.path.isdir(parent):
        return None
    written: ast.Str = use.call.args[0]  # type: ignore[assignment]
    what = "dataset directory" if use.data.kind == "hf_disk" else "data file"
    try:
        entries = os.listdir(parent)
    except OSError:
        entries = []
    # names compared without their extension: `.jsonl` alone would make `code.jsonl` close to `math.jsonl`
    stems: dict[str, str] = {}
    for entry in sorted(entries):
        stems.setdefault(os.path.splitext(entry)[0], entry)
    stem = suggest(os.path.splitext(os.path.basename(path))[0], stems)
    close = stems[stem] if stem is not None else None
    return make("CAS320", f"{what} `{written.value}` does not exist", written.span, label="not found",
                notes=(f"resolved to `{_shown(path)}`",),
                help=f"did you mean `{os.path.join(os.path.dirname(written.value), close)}`?" if close else
                "create it before `cascadec run`, or fix the path (relative paths are resolved from the spec's "
                "directory)")


def _absent_folder(path: str) -> str | None:
    """The outermost folder of ``path`` that does not exist, or None when the folder meant to hold it exists."""
    folder = os.path.dirname(path)
    if os.path.isdir(folder):
        return None
    while not os.path.isdir(os.path.dirname(folder)) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def _missing_folder(folder: str, uses: list[_Use]) -> Diagnostic:
    """One CAS320 for the sources of one spec file under the missing ``folder``: at the first, the others
    marked (a spec written for data not yet prepared gets one warning, not one a file). The help corrects the
    folder's name where that names an existing file (`dat/math.jsonl` for `data/math.jsonl`)."""
    first = uses[0]
    path, written = first.data.path or "", first.call.args[0]
    assert isinstance(written, ast.Str)
    what = "dataset directory" if first.data.kind == "hf_disk" else "data file"
    there = os.path.dirname(folder)
    try:
        folders = [e for e in os.listdir(there) if os.path.isdir(os.path.join(there, e))]
    except OSError:
        folders = []
    close = suggest(os.path.basename(folder), folders)
    fixed = os.path.join(there, close, os.path.relpath(path, folder)) if close else None
    notes = [f"resolved to `{_shown(path)}`; the folder `{_shown(folder)}` does not exist"]
    if len(uses) > 1:
        more = len(uses) - 1
        notes.append(f"{more} more data source{'s' if more > 1 else ''} of this file "
                     f"{'name paths' if more > 1 else 'names a path'} in it")
    help_ = "create the folder and its files before `cascadec run`, or fix the path (relative paths are resolved " \
        "from the spec's directory)"
    if fixed is not None and os.path.exists(fixed):
        # the corrected path as written: relative to the written path's own folder
        beside = os.path.relpath(fixed, os.path.dirname(path))
        help_ = f"did you mean `{os.path.normpath(os.path.join(os.path.dirname(written.value), beside))}`?"
    return make("CAS320", f"{what} `{written.value}` does not exist", written.span, label="not found",
                secondary=tuple((u.call.args[0].span, "also in the missing folder") for u in uses[1:]),
                notes=tuple(notes), help=help_)


def _read_first_line(path: str) -> tuple[int, str] | None:
    """(line number, text) of the first non-empty line, or None when the file has none.

    Raises OSError, UnicodeDecodeError, and `_TooLong` for a line of `_MAX_LINE` characters or more.
    """
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(iter(lambda: f.readline(_MAX_LINE), ""), start=1):
            if len(line) == _MAX_LINE and not line.endswith("\n"):
                raise _TooLong
            if line.strip():
                return lineno, line
    return None


def _first_row(use: _Use) -> tuple[int, dict[str, Any]] | Diagnostic | None:
    """(line number, row) of the first non-empty line of a jsonl file, the CAS322 saying why there is none,
    or None when the file is not read (a pipe or device, whose reading could block, or a huge first row)."""
    path = use.data.path or ""
    span = use.call.args[0].span
    shown = _shown(path)
    if not os.path.isfile(path) and not os.path.isdir(path):
        return None
    try:
        found = _read_first_line(path)
    except _TooLong:
        return None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.reason if isinstance(e, UnicodeDecodeError) else (e.strerror or type(e).__name__)
        return make("CAS322", f"cannot read data file `{shown}`: {reason}", span, label="read here",
                    help="give a readable UTF-8 jsonl file, one JSON object per line")
    if found is None:
        return make("CAS322", f"data file `{shown}` holds no rows", span, label="empty file",
                    help="write one JSON object per line; the runtime stops on empty data")
    lineno, line = found
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        return make("CAS322", f"`{shown}:{lineno}` is not valid JSON ({e.msg} at column {e.colno})", span,
                    label="first row read here", help="each line must be one JSON object")
    except RecursionError:
        return make("CAS322", f"`{shown}:{lineno}` nests too deeply to parse", span, label="first row read here",
                    help="each line must be one JSON object of reasonable depth")
    if not isinstance(row, dict):
        return make("CAS322", f"`{shown}:{lineno}` is {_JSON_TYPES.get(type(row), 'not an object')}, not a JSON "
                    "object", span, label="first row read here",
                    help='each line must be one JSON object, e.g. {"prompt": "1+1", "answer": "2"}')
    return lineno, row


def _listed(row: dict[str, Any]) -> str:
    return ", ".join(f"`{k}`" for k in sorted(row)) or "none"


def _first_table_row(use: _Use) -> tuple[int, dict[str, Any]] | Diagnostic | None:
    """(row number, first row) of a parquet/arrow/csv/json file or folder, or the CAS322 saying why not."""
    try:
        rows = read_table(use.data.path or "", use.data.kind, use.data.split, limit=_HEAD_ROWS)
    except TableError as e:
        message, _, hint = str(e).partition("\nhelp: ")
        return make("CAS322", message, use.call.args[0].span, label="read here", help=hint or None)
    if not rows:
        return make("CAS322", f"data `{_shown(use.data.path or '')}` holds no rows", use.call.args[0].span,
                    label="no rows", help="give it at least one row; the runtime stops on empty data")
    return 1, rows[0]


def _check_jsonl(use: _Use) -> Iterator[Diagnostic]:
    first = _first_row(use) if use.data.kind == "jsonl" else _first_table_row(use)
    if first is None:
        return
    if isinstance(first, Diagnostic):
        yield first
        return
    lineno, row = first
    where = f"`{_shown(use.data.path or '')}:{lineno}`" if use.data.kind == "jsonl" else \
        f"the first row of `{_shown(use.data.path or '')}`"
    path_span = use.call.args[0].span
    columns_note = (f"{where} has the columns {_listed(row)}",)
    kwargs = {kw.key.name: kw for kw in use.call.kwargs}
    absent = set()
    for role, column in use.data.fields.items():
        if has_path(row, column):
            continue
        absent.add(role)
        value = kwargs[role].value if role in kwargs else kwargs["columns"].value
        yield make("CAS321", f"column `{column}` (mapped to `{role}`) is not in the first row of "
                   f"`{use.call.args[0].value}`", value.span,  # type: ignore[attr-defined]
                   label=f"not a column of {'line' if use.data.kind == 'jsonl' else 'row'} {lineno}", notes=columns_note,
                   help=did_you_mean(column, _paths(row), "columns"))
    problem = None if absent & {PROMPT, MESSAGES} else prompt_problem(row, use.data.fields)
    what = f"the first row of `{use.call.args[0].value}`"
    if problem is not None and problem.kind == "not_string":
        yield _not_string(problem.column, get_path(row, problem.column), what, kwargs[PROMPT].value.span
                          if PROMPT in kwargs else path_span)
    elif problem is not None:
        yield _no_prompt(problem.column, row, what, path_span, columns_note)
    if use.sft_stage is not None and not absent & {ANSWER, COMPLETION}:
        target = sft_target_problem(row, use.data.fields)
        if target is not None:
            yield _row_sft_problem(what, path_span, use.sft_stage,
                                   columns_note, 'map the column to train on, e.g. `completion = "response"`, or '
                                   "give each row an `answer`")


def _paths(row: dict[str, Any], prefix: str = "") -> list[str]:
    """Every column path of ``row``: top-level names and dotted paths into nested objects."""
    out = []
    for key, value in row.items():
        out.append(prefix + key)
        if isinstance(value, dict):
            out += _paths(value, f"{prefix}{key}.")
    return out


def _not_string(column: str, value: Any, what: str, span: Span) -> Diagnostic:
    return make("CAS322", f"prompt column `{column}` of {what} is {_JSON_TYPES.get(type(value), 'not a string')}, "
                "not a string", span, label="prompt read from here",
                help="the prompt is the user turn: give it as text")


def _no_prompt(column: str, row: dict[str, Any], what: str, span: Span, notes: tuple[str, ...]) -> Diagnostic:
    close = suggest(column, row)
    return make("CAS321", f"{what} has no `{column}` column", span, label="no prompt in its first row", notes=notes,
                help=f'map it: `prompt = "{close}"`' if close else
                'map the prompt column, e.g. `prompt = "question"`, or a chat column with `messages = "messages"`')


def _row_sft_problem(what: str, span: Span, stage: ast.Ident, notes: tuple[str, ...], hint: str) -> Diagnostic:
    return make("CAS321", f"{what} has no `{COMPLETION}` or `{ANSWER}` for SFT stage `{stage.name}` to train on",
                span, label="nothing to train on", secondary=((stage.span, "SFT stage that trains on it"),),
                notes=notes, help=hint)


def _rows_note(bad: list[int], total: int) -> tuple[str, ...]:
    """A note naming every bad row (1-based), up to ten, when more than one is bad."""
    if len(bad) < 2:
        return ()
    listed = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
    return (f"{len(bad)} of {total} rows lack it (rows {listed})",)


def _check_inline(use: _Use) -> Iterator[Diagnostic]:
    records: list[ast.Record] = list(use.call.args[0].items)  # type: ignore[attr-defined]
    rows = use.data.rows
    prompt_bad = [i for i, row in enumerate(rows) if prompt_problem(row, use.data.fields) is not None]
    if prompt_bad:
        i = prompt_bad[0]
        problem = prompt_problem(rows[i], use.data.fields)
        assert problem is not None
        entries = {e.key.name: e for e in records[i].entries}
        close = suggest(problem.column, entries) if problem.kind == "missing" else None
        if problem.kind == "not_string":
            yield _not_string(problem.column, get_path(rows[i], problem.column), f"inline row {i + 1}",
                              entries[problem.column].value.span if problem.column in entries else records[i].span)
        elif close is not None:
            yield make("CAS321", f"inline row {i + 1} has no `{problem.column}` key", entries[close].key.span,
                       label=f"the runtime reads `{problem.column}`",
                       notes=_rows_note([j + 1 for j in prompt_bad], len(rows)),
                       help=f"did you mean `{problem.column}`?")
        else:
            yield make("CAS321", f"inline row {i + 1} has no `{problem.column}` key", records[i].span,
                       label="no prompt", notes=_rows_note([j + 1 for j in prompt_bad], len(rows)),
                       help=f'give every row a prompt: `{{{problem.column} = "...", answer = "..."}}`')
    if use.sft_stage is not None:
        target_bad = [i for i, row in enumerate(rows) if sft_target_problem(row, use.data.fields) is not None]
        if target_bad:
            i = target_bad[0]
            yield _row_sft_problem(f"inline row {i + 1}", records[i].span, use.sft_stage,
                                   _rows_note([j + 1 for j in target_bad], len(rows)),
                                   'give every row an `answer = "..."` (or a `completion = "..."`)')


def check_data(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS320/CAS321/CAS322 for every domain's train and eval data."""
    absent: dict[tuple[str, str], list[_Use]] = {}
    for use in _uses(ctx):
        kind = use.data.kind
        path = use.data.path or ""
        folder = _absent_folder(path) if kind in FILE_KINDS and not os.path.exists(path) else None
        if folder is not None:
            absent.setdefault((folder, use.call.args[0].span.path), []).append(use)
        elif kind in FILE_KINDS:
            missing = _missing_path(use)
            if missing is not None:
                yield missing
            elif kind != "hf_disk" and os.path.exists(use.data.path or ""):
                yield from _check_jsonl(use)
        elif kind == "inline":
            yield from _check_inline(use)
    for (folder, _), uses in absent.items():
        yield _missing_folder(folder, uses)
