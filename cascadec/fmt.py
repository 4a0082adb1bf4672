"""Canonical layout of a `.cascade` file that keeps comments and the user's line breaks.

The formatter re-lexes the text (comments included) and rewrites only whitespace: two-space indentation
by bracket depth (one level more for a line that continues the item above), two spaces between items that
share a line (`steps = 70  overlong = filter`), one space between other tokens except around `( ) [ ] , : .`,
calls and the braces of a record, trailing comments two spaces after code, at most one blank line, one
final newline. A line longer than `WIDTH` is wrapped as the examples are: a block that opens on it gets its
items on the lines below and its `}` on its own line, a block's items break between items, and a call's or
list's arguments after the last comma that fits. Tokens are unchanged, so the formatted file
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


#: Lines longer than this are wrapped (the examples' width).
WIDTH = 120


def _layout(text: str) -> list[tuple[int, str, list[tuple[Token, int, list[str]]]]]:
    """Each output line: (blank lines before, its text, and per token: the token, its end column, and the
    brackets open after it)."""
    out = []
    stack: list[str] = []  # open brackets
    for i, (blank, toks) in enumerate(_lines(text)):
        indent = len(stack) - 1 if toks[0].type in _CLOSE else len(stack) + _continues(toks, stack)
        line = "  " * max(indent, 0) + _token_text(toks[0])
        _push(stack, toks[0])
        placed = [(toks[0], len(line), list(stack))]
        for k in range(1, len(toks)):
            gap = "  " if _starts_item(toks, k, stack) else _space(toks[k - 1], toks[k])
            if _in_record(stack) and (toks[k - 1].type == "LBRACE" or toks[k].type == "RBRACE"):
                gap = ""  # a record value hugs its braces: `[{prompt = "1+1", answer = "2"}]`
            line += gap + _token_text(toks[k])
            _push(stack, toks[k])
            placed.append((toks[k], len(line), list(stack)))
        out.append((blank if i else 0, line, placed))
    return out


def _render(text: str) -> str:
    for _ in range(1000):  # each pass breaks one line; a file has fewer long lines than that
        layout = _layout(text)
        cut = next((c for _, line, placed in layout if len(line) > WIDTH
                    for c in [_break_at(placed)] if c is not None), None)
        if cut is None:
            break
        text = text[:cut] + "\n" + text[cut:]
    lines = [("\n" if blank else "") + line for blank, line, _ in layout]
    return "\n".join(lines).strip("\n") + "\n"


def _break_at(placed: list[tuple[Token, int, list[str]]]) -> int | None:
    """Where (an offset in the source text) to break a line that is too long, the way the examples do: after
    the `{` of a block that opens on it (its items go on the lines below, its `}` on its own line), else
    before the last item of the block that still starts within `WIDTH`, else after the last `,` inside
    brackets that ends within it. None when the line has no such place (one long string)."""
    toks = [t for t, _, _ in placed]
    for k, (tok, _, stack) in enumerate(placed[:-1]):
        if tok.type == "LBRACE" and not _in_record(stack) and toks[k + 1].type not in ("RBRACE", "COMMENT"):
            close = _closing(placed, k)
            if close is not None and placed[close - 1][0].type != "LBRACE":
                return toks[close].start_pos  # `}` first: the offsets before it stay valid
            return toks[k + 1].start_pos
    items = [k for k in range(1, len(placed)) if placed[k - 1][1] + 2 <= WIDTH and placed[k][2][-1:] == ["LBRACE"]
             and not _in_record(placed[k][2]) and _starts_item(toks, k, placed[k - 1][2])]
    commas = [k + 1 for k, (tok, end, stack) in enumerate(placed[:-1])
              if tok.type == "COMMA" and end <= WIDTH and toks[k + 1].type != "COMMENT"]
    best = max(items, default=None) if items else max(commas, default=None)
    return toks[best].start_pos if best is not None else None


def _closing(placed: list[tuple[Token, int, list[str]]], k: int) -> int | None:
    """Index of the token that closes the bracket opened at ``k`` on the same line, if any."""
    depth = len(placed[k][2])
    for j in range(k + 1, len(placed)):
        if placed[j][0].type in _CLOSE and len(placed[j][2]) == depth - 1:
            return j
    return None


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
