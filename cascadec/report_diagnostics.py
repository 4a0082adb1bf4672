"""Diagnostic renderers: `Diagnostic` objects -> text in the formats `cascadec lint --format` offers.

Formats follow ruff's set (https://docs.astral.sh/ruff/settings/#output-format):

- ``full``: rustc-style snippets with a gutter, ``^^^`` under the primary span, ``---`` under
  secondary spans, ``= note:`` / ``= help:`` lines and a summary line;
- ``concise``: one ``path:line:col: severity[CODE] message`` line per diagnostic;
- ``json``: a list of ruff-like objects (``code``, ``name``, ``message``, ``severity``,
  ``filename``, ``location``, ``end_location``, ``help``, ``notes``, ``url``);
- ``github``: GitHub Actions workflow commands (``::error ...::message``);
- ``sarif``: SARIF 2.1.0.

Every renderer is pure, deterministic (diagnostics are sorted by path, line, column, code) and
emits no colour codes. Lines and columns are 1-based; ends are exclusive, as in `Span`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import PurePath

from rich.text import Text

from cascadec import __version__, chars
from cascadec.codes import CODES
from cascadec.diagnostics import Diagnostic, Label, Span

#: Where the per-code explanations live; each code has the anchor ``#casNNN`` there.
DIAGNOSTICS_DOC = "docs/diagnostics.md"

_TAB_WIDTH = 4


def diagnostic_url(code: str) -> str:
    """The documentation link of ``code``: ``docs/diagnostics.md#cas301`` for ``CAS301``."""
    return f"{DIAGNOSTICS_DOC}#{code.lower()}"


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics in the canonical order: (path, line, column, code), then message for ties."""
    return sorted(diagnostics, key=lambda d: (*d.sort_key(), d.message))


def summary_line(diagnostics: Sequence[Diagnostic]) -> str:
    """``found 2 errors and 1 warning``; empty when there is nothing to report."""
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    parts = [_plural(n, word) for n, word in ((errors, "error"), (warnings, "warning")) if n]
    return f"found {' and '.join(parts)}" if parts else ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ---------------------------------------------------------------- full


def render_full(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str]) -> str:
    """Render rustc/ruff-style diagnostics with source snippets.

    Args:
        diagnostics: the diagnostics to show, in any order.
        sources: file text by `Span.path`; a label whose file is missing is shown as its location only.

    Returns:
        The text, one block per diagnostic separated by blank lines, then a summary line and a
        trailing newline; ``""`` when ``diagnostics`` is empty.

    Example::

        error[CAS301]: unknown stage `trian`
          --> specs/x.cascade:12:10
           |
        12 | stage rl = grpo(trian) on math
           |                 ^^^^^ not defined in this cascade
           |
           = help: did you mean `train`?
    """
    ordered = sort_diagnostics(diagnostics)
    if not ordered:
        return ""
    blocks = [_render_one(d, sources) for d in ordered]
    return "\n\n".join(blocks) + "\n\n" + summary_line(ordered) + "\n"


def _render_one(diag: Diagnostic, sources: Mapping[str, str]) -> str:
    lines = [f"{diag.severity}[{diag.code}]: {chars.escaped(diag.message)}"]
    labels = _ordered_labels(diag)
    shown_lines = [lab.span.line for lab in labels if lab.span.path in sources]
    width = max((len(str(n)) for n in shown_lines), default=1)
    pad = " " * width

    by_path: dict[str, list[Label]] = {}
    for label in labels:
        by_path.setdefault(label.span.path, []).append(label)
    for index, (path, group) in enumerate(by_path.items()):
        arrow = "-->" if index == 0 else ":::"
        text = sources.get(path)
        if text is None:
            # Without the file's text, each label is a location line with its text after it.
            for i, lab in enumerate(sorted(group, key=lambda lab: not lab.primary)):
                where = f"{path}:{lab.span.line}:{lab.span.column}"
                suffix = f" ({chars.escaped(lab.text)})" if lab.text else ""
                lines.append(f"{pad}{arrow if i == 0 else ':::'} {where}{suffix}")
            continue
        # The arrow line points at the primary span (rustc); other files at their first label.
        first = diag.span if index == 0 and diag.span else group[0].span
        lines.append(f"{pad}{arrow} {path}:{first.line}:{first.column}")
        lines.append(f"{pad} |")
        # Lark counts lines at "\n" only; str.splitlines would also split at \f, \v, \x1c, U+2028, ...
        lines.extend(_snippet(group, text.split("\n"), width))
    tail = [f"{pad} = note: {chars.escaped(note)}" for note in diag.notes]
    if diag.help:
        tail.append(f"{pad} = help: {chars.escaped(diag.help)}")
    if tail:
        if labels and any(lab.span.path in sources for lab in labels):
            lines.append(f"{pad} |")
        lines.extend(tail)
    return "\n".join(lines)


def _ordered_labels(diag: Diagnostic) -> list[Label]:
    """Primary label's file first (rustc shows the primary location in the ``-->`` line)."""
    primary_path = diag.span.path if diag.span else ""
    return sorted(diag.labels, key=lambda lab: (lab.span.path != primary_path, lab.span))


def _snippet(labels: list[Label], source_lines: list[str], width: int) -> list[str]:
    """Source lines of ``labels`` (in line order), each followed by one underline row per label."""
    out: list[str] = []
    by_line: dict[int, list[Label]] = {}
    for label in labels:
        by_line.setdefault(label.span.line, []).append(label)
    previous = 0
    for line_no in sorted(by_line):
        if previous and line_no > previous + 1:
            out.append("...")
        previous = line_no
        raw = source_lines[line_no - 1].removesuffix("\r") if 0 < line_no <= len(source_lines) else ""
        shown, cells = _cells(raw)
        out.append(f"{line_no:>{width}} | {shown}".rstrip())
        for label in sorted(by_line[line_no], key=lambda lab: (lab.span.column, not lab.primary)):
            start, length = _underline_extent(label.span, cells)
            mark = ("^" if label.primary else "-") * length
            text = f" {chars.escaped(label.text)}" if label.text else ""
            out.append(f"{' ' * width} | {' ' * start}{mark}{text}")
    return out


def _cells(raw: str) -> tuple[str, list[int]]:
    """``raw`` as the excerpt shows it, and the display column at which each of its characters starts (one
    more entry: the end of the line). Tabs expand to the next multiple of 4; wide (East Asian W/F) characters
    take 2 columns and combining marks none; controls become their one-column Unicode "control pictures"
    (NUL → ␀), so a stray byte neither corrupts the terminal nor shifts the carets; invisible and bidi
    characters become ``<U+202E>`` (`cascadec.chars`), so the excerpt reads as the parser reads it."""
    pieces: list[str] = []
    cells = [0]
    for ch in raw:
        column = cells[-1]
        if ch == "\t":
            piece = " " * (_TAB_WIDTH - column % _TAB_WIDTH)
        elif ord(ch) < 0x20 or ch == "\x7f":
            piece = chr(0x2400 + ord(ch)) if ch != "\x7f" else "\u2421"
        elif chars.unseen(ch):
            piece = chars.escaped(ch)
        else:
            piece = ch
        pieces.append(piece)
        cells.append(column + _width(piece))
    return "".join(pieces), cells


def _width(piece: str) -> int:
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
               for ch in piece)


def _underline_extent(span: Span, cells: list[int]) -> tuple[int, int]:
    """Display offset and width of ``span`` on its first line, whose characters start at ``cells`` (`_cells`).

    Columns count characters (code points), as Lark and `Span` do; a span past the end of the line counts
    one column per missing character. A span that runs onto later lines is underlined to the end of its
    first line; an empty span (an insertion point, or end of file) gets one caret.
    """
    last = len(cells) - 1
    begin = max(span.column - 1, 0)
    end = span.end_column - 1 if span.end_line == span.line else max(last, begin + 1)
    end = max(end, begin + 1)
    start = cells[min(begin, last)] + max(begin - last, 0)
    stop = cells[min(end, last)] + max(end - last, 0)
    return start, max(stop - start, 1)


_HEADER = re.compile(r"^(error|warning)(\[[A-Z]+\d+\])?(:)?")
_ARROW = re.compile(r"^(\s*)(-->|:::)")
_GUTTER = re.compile(r"^(\s*\d*\s)\|( ?)")
_MARKS = re.compile(r"^(\s*)(\^+|-+)(.*)$")
_CONCISE = re.compile(r"^(.*?:\d+:\d+: )?(error|warning)(\[[A-Z]+\d+\])")
_TAIL = re.compile(r"^(\s*)= (help|note):")
_STYLES = {"error": "bold red", "warning": "bold yellow", "gutter": "bold blue", "help": "bold green", "note": "bold"}


def highlight_full(text: str) -> Text:
    """Colour the output of `render_full` / `render_concise` for a terminal (rustc's palette).

    Works on the rendered text line by line: headers, ``-->`` arrows and the gutter, carets
    (primary: the severity's colour, secondary: blue) with their labels, and ``= help:`` / ``= note:``.
    """
    out = Text()
    severity = "error"
    for line in text.splitlines(keepends=True):
        piece = Text(line)
        body = line.rstrip("\n")
        if m := _HEADER.match(body):
            severity = m.group(1)
            piece.stylize(_STYLES[severity], 0, m.end())
            piece.stylize("bold", m.end(), len(body))
        elif m := _ARROW.match(body):
            piece.stylize(_STYLES["gutter"], m.start(2), m.end(2))
        elif m := _TAIL.match(body):
            piece.stylize(_STYLES[m.group(2)], m.start(1), m.end())
        elif m := _GUTTER.match(body):
            piece.stylize(_STYLES["gutter"], 0, m.end(1) + 1)
            rest = body[m.end() :]
            # underline rows have an empty gutter; numbered rows are the user's source, left uncoloured
            marks = _MARKS.match(rest) if not m.group(1).strip() else None
            if marks:
                style = _STYLES[severity] if marks.group(2)[0] == "^" else _STYLES["gutter"]
                piece.stylize(style, m.end() + marks.start(2), len(body))
        elif m := _CONCISE.match(body):
            piece.stylize(_STYLES[m.group(2)], m.start(2), m.end(3))
        elif body.startswith("found "):
            piece.stylize("bold", 0, len(body))
        out.append_text(piece)
    return out


# ---------------------------------------------------------------- concise


def render_concise(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    """One ``path:line:col: severity[CODE] message`` line per diagnostic, then the summary line.

    ``sources`` is accepted for a uniform signature and unused. Returns ``""`` when empty.
    """
    ordered = sort_diagnostics(diagnostics)
    if not ordered:
        return ""
    out = []
    for d in ordered:
        s = d.span
        where = f"{s.path}:{s.line}:{s.column}: " if s else ""
        out.append(f"{where}{d.severity}[{d.code}] {chars.escaped(d.message)}")
    out.append(summary_line(ordered))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- json


def _location(span: Span | None, end: bool) -> dict[str, int] | None:
    if span is None:
        return None
    if end:
        return {"row": span.end_line, "column": span.end_column}
    return {"row": span.line, "column": span.column}


def diagnostic_to_dict(d: Diagnostic) -> dict[str, object]:
    """The JSON object of one diagnostic (ruff's keys plus ``name``, ``notes`` and ``labels``)."""
    s = d.span
    return {
        "code": d.code,
        "name": d.name,
        "message": d.message,
        "severity": d.severity,
        "filename": s.path if s else None,
        "location": _location(s, end=False),
        "end_location": _location(s, end=True),
        "help": d.help,
        "notes": list(d.notes),
        "labels": [
            {
                "filename": lab.span.path,
                "location": _location(lab.span, end=False),
                "end_location": _location(lab.span, end=True),
                "text": lab.text,
                "primary": lab.primary,
            }
            for lab in d.labels
        ],
        "url": diagnostic_url(d.code),
    }


def render_json(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    """A JSON array of `diagnostic_to_dict` objects, sorted keys, two-space indent, trailing newline."""
    items = [diagnostic_to_dict(d) for d in sort_diagnostics(diagnostics)]
    return json.dumps(items, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------- github


def _escape_data(text: str) -> str:
    # Workflow-command escaping, as in @actions/core's command.ts.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    """GitHub Actions annotations: ``::error title=cascadec (CAS301),file=..,line=..::message``.

    The message keeps the ``help:`` text on a second line (encoded as ``%0A``). Returns ``""``
    when empty.
    """
    out = []
    for d in sort_diagnostics(diagnostics):
        s = d.span
        props = [f"title={_escape_property(f'cascadec ({d.code})')}"]
        if s:
            props += [
                f"file={_escape_property(s.path)}",
                f"line={s.line}",
                f"col={s.column}",
                f"endLine={s.end_line}",
                f"endColumn={s.end_column}",
            ]
        where = f"{s.path}:{s.line}:{s.column}: " if s else ""
        message = f"{where}{d.code} {chars.escaped(d.message)}"
        if d.help:
            message += f"\nhelp: {chars.escaped(d.help)}"
        command = "error" if d.severity == "error" else "warning"
        out.append(f"::{command} {','.join(props)}::{_escape_data(message)}")
    return "".join(line + "\n" for line in out)


# ---------------------------------------------------------------- sarif

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _sarif_region(span: Span) -> dict[str, int]:
    return {
        "startLine": span.line,
        "startColumn": span.column,
        "endLine": span.end_line,
        "endColumn": span.end_column,
    }


def _sarif_location(span: Span, text: str | None = None) -> dict[str, object]:
    location: dict[str, object] = {
        "physicalLocation": {
            "artifactLocation": {"uri": PurePath(span.path).as_posix()},
            "region": _sarif_region(span),
        }
    }
    if text:
        location["message"] = {"text": text}
    return location


def _primary_label(d: Diagnostic) -> Label | None:
    return next((lab for lab in d.labels if lab.primary), d.labels[0] if d.labels else None)


def _sarif_rule(code: str, name: str) -> dict[str, object]:
    rule: dict[str, object] = {
        "id": code,
        "name": name,
        "shortDescription": {"text": name},
        # SARIF wants helpUri absolute; our docs link is relative to the repository.
        "help": {"text": f"see {diagnostic_url(code)}"},
    }
    entry = CODES.get(code)
    if entry is not None:
        rule["shortDescription"] = {"text": entry.summary}
        rule["fullDescription"] = {"text": entry.explanation}
    return rule


def render_sarif(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    """A SARIF 2.1.0 log with one run: one rule per distinct code, one result per diagnostic.

    Secondary labels become ``relatedLocations``; ``help`` and notes are appended to the message.
    """
    ordered = sort_diagnostics(diagnostics)
    rule_names: dict[str, str] = {}
    for d in ordered:
        rule_names.setdefault(d.code, d.name)
    codes = sorted(rule_names)
    rules = [_sarif_rule(code, rule_names[code]) for code in codes]
    results = []
    for d in ordered:
        text = "\n".join([d.message, *(f"note: {n}" for n in d.notes), *([f"help: {d.help}"] if d.help else [])])
        result: dict[str, object] = {
            "ruleId": d.code,
            "ruleIndex": codes.index(d.code),
            "level": d.severity,
            "message": {"text": text},
        }
        primary = _primary_label(d)
        if primary is not None:
            result["locations"] = [_sarif_location(primary.span, primary.text)]
        related = [lab for lab in d.labels if lab is not primary]
        if related:
            result["relatedLocations"] = [
                {"id": i, **_sarif_location(lab.span, lab.text)} for i, lab in enumerate(related)
            ]
        results.append(result)
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "cascadec",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


Renderer = Callable[[Iterable[Diagnostic], Mapping[str, str]], str]

#: ``--format`` name -> renderer; every renderer takes ``(diagnostics, sources)``.
RENDERERS: dict[str, Renderer] = {
    "full": render_full,
    "concise": render_concise,
    "json": render_json,
    "github": render_github,
    "sarif": render_sarif,
}
