"""The language server's answers as pure functions of (text, path, position): diagnostics, completion,
hover, definition and formatting. `cascadec.lsp.server` wires them to LSP messages.

Positions are LSP's: 0-based lines, columns in UTF-16 code units; `Span` columns are 1-based characters.
"""

from __future__ import annotations

import os
import re

from lsprotocol import types as t

from cascadec.compiler import compile_source
from cascadec.diagnostics import Diagnostic, Span
from cascadec.lsp import scan
from cascadec.lsp.tables import key_tables

_SEVERITY = {"error": t.DiagnosticSeverity.Error, "warning": t.DiagnosticSeverity.Warning}
_KEYWORDS = {"cascade": ("domain", "stage", "defaults", "resources"), "top": ("import", "cascade", "domain"),
             "domain": ("eval",), "stage": ("resources", "teachers", "until")}
_DATA_KINDS = ("gym", "jsonl", "hf_disk", "inline")


# ---------------------------------------------------------------- positions


def _utf16(line: str, chars: int) -> int:
    return len(line[:chars].encode("utf-16-le")) // 2


def offset_of(text: str, pos: t.Position) -> int:
    """The character offset of an LSP position in ``text``."""
    lines = text.split("\n")
    line = lines[pos.line] if pos.line < len(lines) else ""
    chars, units = 0, 0
    while chars < len(line) and units < pos.character:
        units += 2 if ord(line[chars]) > 0xFFFF else 1
        chars += 1
    return sum(len(x) + 1 for x in lines[:pos.line]) + chars


def position_of(text: str, offset: int) -> t.Position:
    before = text[:offset]
    line = before.count("\n")
    start = before.rfind("\n") + 1
    return t.Position(line, _utf16(text[start:], offset - start))


def _range(span: Span, lines: list[str]) -> t.Range:
    def pos(line: int, column: int) -> t.Position:
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        return t.Position(max(line - 1, 0), _utf16(text, column - 1))

    return t.Range(pos(span.line, span.column), pos(span.end_line, span.end_column))


# ---------------------------------------------------------------- diagnostics


def diagnostics(text: str, path: str) -> list[t.Diagnostic]:
    """The compiler's diagnostics for ``text`` as if saved at ``path`` (imports resolve from its directory).
    One found in an imported file is shown on the `import` line that brings it in."""
    result = compile_source(text, path)
    lines = text.split("\n")
    return [_convert(d, path, text, lines) for d in result.diagnostics]


def _convert(d: Diagnostic, path: str, text: str, lines: list[str]) -> t.Diagnostic:
    span = d.span
    message = d.message + "".join(f"\nnote: {n}" for n in d.notes) + (f"\nhelp: {d.help}" if d.help else "")
    if span is None or span.path == path:
        where = _range(span, lines) if span else t.Range(t.Position(0, 0), t.Position(0, 0))
    else:
        message = f"{os.path.basename(span.path)}:{span.line}:{span.column}: {message}"
        where = _import_line(text, span.path)
    related = [t.DiagnosticRelatedInformation(t.Location(_uri(lab.span.path), _range(lab.span, lines)), lab.text)
               for lab in d.labels if not lab.primary and lab.span.path == path]
    return t.Diagnostic(range=where, message=message, severity=_SEVERITY.get(d.severity, t.DiagnosticSeverity.Information),
                        code=d.code, source="cascadec", related_information=related or None)


def _import_line(text: str, other: str) -> t.Range:
    name = os.path.basename(other)
    for i, line in enumerate(text.split("\n")):
        if re.match(r'\s*import\s+"', line) and name in line:
            return t.Range(t.Position(i, 0), t.Position(i, len(line)))
    return t.Range(t.Position(0, 0), t.Position(0, 0))


def _uri(path: str) -> str:
    return "file://" + os.path.abspath(path) if not path.startswith("<") else path


# ---------------------------------------------------------------- completion


def completion(text: str, offset: int) -> list[t.CompletionItem]:
    """Names valid at ``offset``: keys of the enclosing block, values of the key being assigned, stage
    kinds, parents, domains, evals and trackers."""
    masked = scan.mask(text)
    line = masked[masked.rfind("\n", 0, offset) + 1:offset]
    block = scan.block_at(masked, offset)
    names = scan.declarations(masked)
    tables = key_tables()
    value = _value_candidates(line, block, names, tables)
    if value is not None:
        return [_item(label, doc, t.CompletionItemKind.Value) for label, doc in value.items()]
    keys = _block_keys(block, names, tables)
    items = [_item(k, doc, t.CompletionItemKind.Property, insert=f"{k} = ") for k, doc in keys.items()]
    items += [_item(k, f"`{k}` block", t.CompletionItemKind.Keyword) for k in _KEYWORDS.get(block.kind, ())]
    return items


def _value_candidates(line: str, block: scan.Block, names: scan.Declarations, tables) -> dict[str, str] | None:
    stages = {n: f"stage `{n}`" for n in names.stages}
    if re.search(r"\bstage\s+\w+\s*=\s*\w*$", line):
        return tables.stage_kinds
    if re.search(r"\bstage\s+\w+\s*=\s*\w+\s*\(\s*\w*$", line):
        return {"base": "the base model", **stages}
    if re.search(r"\bon\s*(\[[^\]]*)?\w*$", line) or re.search(r"\bon\s*\[[^\]]*,\s*\w*$", line):
        return {n: f"domain `{n}`" for n in names.domains}
    if re.search(r"\buntil\b.*$", line) and block.kind == "stage":
        return {e: f"eval `{e}`" for e in names.evals}
    m = re.search(r"\b(\w+)\s*=\s*(\[[^\]]*)?\w*$", line)
    if m is None:
        return None
    key = m.group(1)
    if block.kind == "teachers":
        return {"best": "the best of several stages by an eval: `best(a, b by domain.eval)`", **stages}
    if key == "tracking":
        return tables.trackers
    if key == "reward":
        return tables.reward_kinds
    if key == "train" or (block.kind == "domain" and re.search(r"\beval\s+\w+\s*=\s*\w*$", line)):
        return {k: f"data source `{k}(...)`" for k in _DATA_KINDS}
    if key in tables.choices:
        return {c: f"`{key} = {c}`" for c in tables.choices[key]}
    return {}


def _block_keys(block: scan.Block, names: scan.Declarations, tables) -> dict[str, str]:
    if block.kind == "stage":
        return tables.stage.get(block.name, {})
    if block.kind == "teachers":
        return {**{d: f"the teacher for domain `{d}`" for d in names.domains},
                "default": "the teacher for every other domain"}
    return {"cascade": tables.cascade, "domain": tables.domain, "eval": tables.eval,
            "resources": tables.resources}.get(block.kind, {})


def _item(label: str, doc: str, kind: t.CompletionItemKind, insert: str | None = None) -> t.CompletionItem:
    return t.CompletionItem(label=label, kind=kind, detail=doc, insert_text=insert)


# ---------------------------------------------------------------- hover and definition


def hover(text: str, offset: int) -> str | None:
    """Markdown for the key, kind, tracker or declared name at ``offset``."""
    found = scan.word_at(text, offset)
    if found is None:
        return None
    word, _, end = found
    masked = scan.mask(text)
    rest = masked[end:end + 40]
    tables = key_tables()
    if re.match(r"\s*=", rest) and not re.match(r"\s*==", rest):
        block = scan.block_at(masked, offset)
        keys = _block_keys(block, scan.declarations(masked), tables)
        if word in keys:
            return keys[word]
    if re.match(r"\s*\(", rest):
        for table in (tables.reward_kinds, tables.stage_kinds):
            if word in table:
                return table[word]
    if word in tables.trackers:
        return f"tracker `{word}`: {tables.trackers[word]}"
    names = scan.declarations(masked)
    for table, what in ((names.stages, "stage"), (names.domains, "domain")):
        if word in table:
            line_start = text.rfind("\n", 0, table[word]) + 1
            line_end = text.find("\n", table[word])
            return f"{what} `{word}`\n\n```\n{text[line_start:line_end if line_end >= 0 else None].strip()}\n```"
    return None


def definition(text: str, path: str, offset: int) -> t.Location | None:
    """Where the stage, domain or eval named at ``offset`` is declared: this file, then its imports."""
    found = scan.word_at(text, offset)
    if found is None:
        return None
    word, start, _ = found
    dotted = re.search(r"(\w+)\.$", text[max(0, start - 80):start])
    key = f"{dotted.group(1)}.{word}" if dotted else word
    for file, source in _files(text, path):
        names = scan.declarations(scan.mask(source))
        for table in (names.evals, names.stages, names.domains):
            if key in table:
                at = position_of(source, table[key])
                end = t.Position(at.line, at.character + len(word))
                return t.Location(_uri(file), t.Range(at, end))
    return None


def _files(text: str, path: str) -> list[tuple[str, str]]:
    out = [(path, text)]
    base = os.path.dirname(path)
    for rel in scan.imports(text):
        target = os.path.normpath(os.path.join(base, rel))
        try:
            with open(target, encoding="utf-8-sig") as f:
                out.append((target, f.read()))
        except OSError:
            continue  # the compiler reports a missing import (CAS309)
    return out


def formatting(text: str, path: str) -> list[t.TextEdit]:
    """One edit replacing the document by `cascadec fmt`'s layout; none when it is formatted or does not parse."""
    from cascadec.fmt import format_source

    formatted, _ = format_source(text, path)
    if formatted is None or formatted == text:
        return []
    return [t.TextEdit(t.Range(t.Position(0, 0), position_of(text, len(text))), formatted)]
