"""Canonical layout of a `.cascade` file that keeps comments and the user's line breaks.

The formatter re-lexes the text (comments included) and rewrites only whitespace: two-space indentation
by bracket depth (one level more for a line that continues the item above), two spaces between items that
share a line (`steps = 70  overlong = filter`), one space between other tokens except around `( ) [ ] , : .`,
calls and the braces of a record, trailing comments two spaces after code, at most one blank line, one
final newline. Tokens are unchanged, so the formatted file
compiles to the same plan (up to origins), and formatting is idempotent.
"""

from __future__ import annotations

import re

from lark import Token
from lark.exceptions import LarkError

from cascadec.codes import make
from cascadec.diagnostics import Diagnostic
from cascadec.parser import build_parser, parse

_OPEN = {"LPAR", "LSQB", "LBRACE"}
_CLOSE = {"RPAR", "RSQB", "RBRACE"}
_NO_SPACE_BEFORE = {"RPAR", "RSQB", "COMMA", "COLON", "DOT"}
_NO_SPACE_AFTER = {"LPAR", "LSQB", "DOT"}


_ITEM_KEYWORDS = {"UNTIL", "TEACHERS", "RESOURCES", "EVAL", "STAGE", "DOMAIN", "DEFAULTS"}


def _starts_item(toks: list[Token], k: int, stack: list[str]) -> bool:
    """Token ``k`` begins a block item (`key =` or a keyword) that follows another item on the line."""
    # `eval NAME =` and `stage NAME =` are one item: the name after the keyword starts nothing
    if stack and stack[-1] != "LBRACE" or toks[k - 1].type in ("LBRACE", "COMMA", *_ITEM_KEYWORDS):
        return False
    tok = toks[k]
    return tok.type in _ITEM_KEYWORDS or (tok.type == "NAME" and k + 1 < len(toks) and toks[k + 1].type == "EQUAL")


_LINE_STARTS = _ITEM_KEYWORDS | _CLOSE | {"COMMENT", "IMPORT", "CASCADE"}


def _continues(toks: list[Token], stack: list[str]) -> int:
    """1 when a line inside a block carries on the item of the line above (`or ...` of a stop rule, the
    end of a schedule after `->`), so that it is indented one level deeper than the item."""
    if stack and stack[-1] != "LBRACE":
        return 0  # inside ( ) or [ ] the bracket depth already indents
    first = toks[0]
    if first.type in _LINE_STARTS:
        return 0
    return 0 if first.type == "NAME" and (len(toks) == 1 or toks[1].type == "EQUAL") else 1


def _space(prev: Token, tok: Token) -> str:
    if tok.type == "COMMENT":
        return "  "
    if tok.type in _NO_SPACE_BEFORE or prev.type in _NO_SPACE_AFTER:
        return ""
    if tok.type == "LPAR" and prev.type == "NAME":  # a call: `gym(`
        return ""
    return " "


def _lines(text: str) -> list[tuple[int, list[Token]]]:
    """Logical lines as (blank lines before, tokens), whitespace tokens dropped."""
    lines: list[tuple[int, list[Token]]] = []
    newlines = 0
    for tok in build_parser().lex(text, dont_ignore=True):
        if tok.type == "WS":
            newlines += tok.count("\n")
            continue
        if newlines or not lines:
            lines.append((max(newlines - 1, 0), [tok]))
        else:
            lines[-1][1].append(tok)
        newlines = 0
    return lines


def _render(text: str) -> str:
    out: list[str] = []
    stack: list[str] = []  # open brackets
    for i, (blank, toks) in enumerate(_lines(text)):
        if blank and i:
            out.append("")
        indent = len(stack) - 1 if toks[0].type in _CLOSE else len(stack) + _continues(toks, stack)
        line = "  " * max(indent, 0) + _token_text(toks[0])
        _push(stack, toks[0])
        for k in range(1, len(toks)):
            gap = "  " if _starts_item(toks, k, stack) else _space(toks[k - 1], toks[k])
            if _in_record(stack) and (toks[k - 1].type == "LBRACE" or toks[k].type == "RBRACE"):
                gap = ""  # a record value hugs its braces: `[{prompt = "1+1", answer = "2"}]`
            line += gap + _token_text(toks[k])
            _push(stack, toks[k])
        out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def _in_record(stack: list[str]) -> bool:
    """The innermost open bracket is a record `{...}` inside a call or a list (not a block)."""
    return len(stack) >= 2 and stack[-1] == "LBRACE" and stack[-2] in ("LPAR", "LSQB")


def _push(stack: list[str], tok: Token) -> None:
    if tok.type in _OPEN:
        stack.append(tok.type)
    elif tok.type in _CLOSE and stack:
        stack.pop()


def _token_text(tok: Token) -> str:
    if tok.type == "WARMUP":
        return re.sub(r"\s+", " ", str(tok))
    if tok.type == "COMMENT":
        return str(tok).rstrip()
    return str(tok)


def format_source(text: str, path: str = "<string>") -> tuple[str | None, list[Diagnostic]]:
    """The canonical layout of ``text``, or (None, diagnostics) when it does not parse."""
    module, diagnostics = parse(text, path)
    if module is None:
        return None, diagnostics
    try:
        return _render(text), []
    except LarkError as exc:  # the parse succeeded, so the plain lexer failing is a bug
        return None, [make("CAS999", f"internal formatter error: {exc.__class__.__name__}",
                           help="this is a bug in cascadec; please report it with the file")]
