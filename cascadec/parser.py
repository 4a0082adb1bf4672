"""Text → `cascadec.ast.Module`. Syntax errors become CAS1xx diagnostics, never Lark tracebacks."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark import __version__ as lark_version
from lark.exceptions import VisitError

from cascadec import ast
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic, Span
from cascadec.transform import StringEscapeError, ToAst, token_span

# terminal name → how a user would call it in "expected ..." hints
_TERMINAL_WORDS = {
    "NAME": "a name",
    "NUM": "a number",
    "STRING": "a string",
    "METRIC": "a metric such as `avg@4`",
    "CMP": "a comparison (`>=`, `>`, `<=`, `<`)",
    "WARMUP": "`warmup N`",
    "$END": "the end of the file",
}


# text ending in `-> END`: the parser wanted a schedule kind (`cosine`, ...) after it
_SCHEDULE_END = re.compile(r"->\s*[-0-9][^\s]*\s*$")


def grammar_text() -> str:
    return resources.files("cascadec").joinpath("grammar.lark").read_text(encoding="utf-8")


def _cache_file() -> str | bool:
    """Where Lark keeps the built LALR tables between processes (it checks the grammar's hash on load and
    only logs a failed write); building them costs about 0.5 s per cold process."""
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cascadec"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return str(folder / f"grammar-lark{lark_version}.cache")


@lru_cache(maxsize=1)
def build_parser(strict: bool = False) -> Lark:
    """The LALR parser (cached in memory and on disk). ``strict=True`` makes Lark reject any shift/reduce
    conflict or terminal collision in the grammar (used by a test; never read from the disk cache)."""
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True,
                strict=strict, cache=False if strict else _cache_file())


def _describe(parser: Lark, names: set[str]) -> list[str]:
    words = set()
    for name in names:
        if name in _TERMINAL_WORDS:
            words.add(_TERMINAL_WORDS[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            words.add(name.lower())
            continue
        words.add(f"`{pattern.value}`" if pattern.type == "str" else name.lower())
    return sorted(words)


def _point(path: str, text: str, line: int, column: int, pos: int, width: int) -> Span:
    end = min(pos + max(width, 1), len(text))
    if end <= pos:  # at the end of the file: point at its last visible character
        pos = max(len(text.rstrip()) - 1, 0)
        end = min(pos + 1, len(text))
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return Span(path, line, column, line, column + (end - pos), pos, end)


_PAIRS = {"RBRACE": "LBRACE", "RPAR": "LPAR", "RSQB": "LSQB"}


def _unclosed(parser: Lark, text: str) -> Token | None:
    """The innermost bracket still open at the end of ``text`` (None if the text does not lex)."""
    stack: list[Token] = []
    try:
        for tok in parser.lex(text):
            if tok.type in _PAIRS.values():
                stack.append(tok)
            elif tok.type in _PAIRS and stack and stack[-1].type == _PAIRS[tok.type]:
                stack.pop()
    except UnexpectedInput:
        return None
    return stack[-1] if stack else None


MAX_NESTING = 64


def _too_deep(parser: Lark, text: str, path: str) -> Diagnostic | None:
    """CAS105 at the first bracket nested deeper than `MAX_NESTING` (the AST builder recurses per level)."""
    depth = 0
    for tok in parser.lex(text):
        if tok.type in _PAIRS.values():
            depth += 1
            if depth > MAX_NESTING:
                return make("CAS105", f"brackets nested more than {MAX_NESTING} levels deep", token_span(path, tok),
                            label=f"level {depth}", help="flatten the value; no key takes data nested this deep")
        elif tok.type in _PAIRS:
            depth -= 1
    return None


def _syntax_diagnostic(parser: Lark, exc: UnexpectedInput, text: str, path: str) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        span = _point(path, text, exc.line, exc.column, exc.pos_in_stream, 1)
        hint = ("strings use double quotes" if char == "'" else
                "only `#` starts a comment; keys, values and blocks are listed in docs/language.md")
        shown = f"`{char}`" if char.isprintable() and not char.isspace() else f"U+{ord(char):04X}" if char else "end"
        return make("CAS101", f"unexpected character {shown}", span, label="no token starts here", help=hint)
    expected_names = set(getattr(exc, "expected", ()) or ())
    interactive = getattr(exc, "interactive_parser", None)
    if interactive is not None:
        # LALR merges look-aheads of different contexts; simulating the parser gives the exact set
        expected_names = set(interactive.accepts()) or expected_names
    expected = _describe(parser, expected_names)
    shown = ", ".join(expected[:8]) + (", ..." if len(expected) > 8 else "")
    token = getattr(exc, "token", None)
    if isinstance(exc, UnexpectedEOF) or (isinstance(token, Token) and token.type == "$END"):
        span = _point(path, text, 1, 1, len(text), 0)
        opener = _unclosed(parser, text)
        secondary = ((token_span(path, opener), f"this `{opener}` is never closed"),) if opener else ()
        return make("CAS102", "unexpected end of file", span, label="the file ends here", secondary=secondary,
                    help=f"expected {shown}" if shown else "close the open block with `}`")
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    span = _point(path, text, tok.line, tok.column, tok.start_pos, len(str(tok)))
    found = f"`{tok}`"
    if _SCHEDULE_END.search(text, 0, tok.start_pos) and expected == [_TERMINAL_WORDS["NAME"]]:
        return make("CAS100", f"unexpected {found} after a learning-rate schedule", span, label="unexpected here",
                    help="a schedule `PEAK -> END` needs its shape: write `cosine`, `linear` or `constant` after END")
    return make("CAS100", f"unexpected {found}", span, label="unexpected here", help=f"expected {shown}")


def parse(text: str, path: str = "<string>") -> tuple[ast.Module | None, list[Diagnostic]]:
    """Parse ``text``; on a syntax error return ``(None, [one CAS1xx diagnostic])``."""
    parser = build_parser()
    try:
        tree = parser.parse(text)
    except UnexpectedInput as exc:
        return None, [_syntax_diagnostic(parser, exc, text, path)]
    deep = _too_deep(parser, text, path)
    if deep is not None:
        return None, [deep]
    try:
        return ToAst(path).transform(tree), []
    except VisitError as exc:
        if isinstance(exc.orig_exc, StringEscapeError):
            return None, [make("CAS103", "invalid escape in string", exc.orig_exc.span,
                               label="this string", help="write a backslash as `\\\\`; valid escapes: "
                               "`\\n`, `\\t`, `\\\"`, `\\\\`, `\\uXXXX`")]
        raise
