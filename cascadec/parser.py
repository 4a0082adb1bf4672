"""Text → `cascadec.ast.Module`. Syntax errors become CAS1xx diagnostics, never Lark tracebacks."""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark import __version__ as lark_version
from lark.exceptions import VisitError

from cascadec import ast, chars
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic, Span
from cascadec import parse_hints
from cascadec.parse_hints import keywords
from cascadec.transform import StringEscapeError, ToAst, token_span
from cascadec.units import UNITS

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
    parser = Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True,
                  strict=strict, cache=False if strict else _cache_file())
    # `Lark.lex` builds a new lexer on every call unless one is kept here (an LALR parser keeps none), and
    # building one checks every pair of terminals for collisions when `interegular` is installed: 0.3 s a
    # call, paid by each nesting check and each syntax error.
    parser.lexer = parser._build_lexer()
    return parser


def reserved_words() -> frozenset[str]:
    """The grammar's keywords that look like names (`stage`, `eval`, `or`, ...): they cannot name anything."""
    return frozenset(keywords(build_parser()).values())


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


# a string or a comment (skipped: brackets in them do not nest), or a bracket; STRING and COMMENT of grammar.lark
_BRACKET_SCAN = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|#[^\n]*|[][(){}]')
_OPENERS, _CLOSERS = frozenset("([{"), frozenset(")]}")


def _too_deep(text: str, path: str) -> Diagnostic | None:
    """CAS105 at the first bracket nested deeper than `MAX_NESTING` (the AST builder recurses per level).
    Runs on text that parsed, so one regular-expression pass finds the brackets (lexing it again took as long
    as a fifth of the parse)."""
    depth = 0
    for found in _BRACKET_SCAN.finditer(text):
        bracket = found.group()
        if bracket in _OPENERS:
            depth += 1
            if depth > MAX_NESTING:
                pos = found.start()
                line, column = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
                return make("CAS105", f"brackets nested more than {MAX_NESTING} levels deep",
                            Span(path, line, column, line, column + 1, pos, pos + 1), label=f"level {depth}",
                            help="flatten the value; no key takes data nested this deep")
        elif bracket in _CLOSERS:
            depth -= 1
    return None


def _syntax_diagnostic(parser: Lark, exc: UnexpectedInput, text: str, path: str) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        span = _point(path, text, exc.line, exc.column, exc.pos_in_stream, 1)
        hint = ("strings use double quotes" if char == "'" else
                "only `#` starts a comment; keys, values and blocks are listed in docs/language.md")
        if char and not char.isascii():
            hint = _foreign_hint(char, hint)
        shown = chars.shown(char) if char else "end"
        if char == '"':  # no string token matches: its closing quote is missing on this line
            return make("CAS101", "unterminated string", span, label="this string is not closed on its line",
                        help='close it with `"` on the same line (a string cannot span lines; write `\\"` for a '
                             'quote inside it)')
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
    dangling = _dangling_assign(parser, text, exc.token.start_pos)
    if dangling is not None:
        equal, keyword = dangling
        return make("CAS100", "missing value after `=`", token_span(path, equal), label="no value",
                    secondary=((token_span(path, keyword), f"`{keyword}` is a reserved word that starts a new item"),),
                    help="write the value after `=`, or remove the key")
    tok = exc.token
    span = _point(path, text, tok.line, tok.column, tok.start_pos, len(str(tok)))
    found = f"`{tok}`"
    number = _number_mistake(parser, text, tok)
    if number is not None:
        message, at, label, help_line = number
        return make("CAS100", message, token_span(path, at), label=label, help=help_line)
    hint = _misread(parser, text, tok)
    if hint is not None:
        message, at, label, help_line = hint
        return make("CAS100", message, token_span(path, at), label=label, help=help_line)
    if _SCHEDULE_END.search(text, 0, tok.start_pos) and expected == [_TERMINAL_WORDS["NAME"]]:
        return make("CAS100", f"unexpected {found} after a learning-rate schedule", span, label="unexpected here",
                    help="a schedule `PEAK -> END` needs its shape: write `cosine`, `linear` or `constant` after END")
    in_brackets = "COMMA" in expected_names and expected_names & {"RPAR", "RSQB"}
    if in_brackets and tok.type in ("NAME", "NUM", "STRING", "METRIC"):
        bracket = _unclosed(parser, text[:tok.start_pos])
        if bracket is not None and not text[text.rfind("\n", 0, tok.start_pos) + 1:tok.start_pos].strip():
            # the token opens a line: more likely a bracket left open on the line above than a missing comma
            close = ")" if bracket.type == "LPAR" else "]"
            return make("CAS100", f"unexpected {found}: the `{bracket}` before it is not closed", span,
                        label="unexpected here",
                        secondary=((token_span(path, bracket), f"this `{bracket}` is not closed"),),
                        help=f"close it with `{close}`, or separate items with `,`")
        return make("CAS100", f"missing `,` before {found}", span, label="`,` expected before this",
                    help="separate the items of a call `( )` or list `[ ]` with `,`")
    opener = _unclosed(parser, text[:tok.start_pos]) if tok.type in _ITEM_STARTS and "RBRACE" in expected_names \
        else None
    if opener is not None and opener.type == "LBRACE":
        return make("CAS100", f"unexpected `{tok}`: the block before it is not closed", span,
                    label="starts a new item",
                    secondary=((token_span(path, opener), "this `{` is not closed"),),
                    help=f"close the block with `}}` before `{tok}`")
    return make("CAS100", f"unexpected {found}", span, label="unexpected here", help=f"expected {shown}")


def _foreign_hint(char: str, hint: str) -> str:
    """The help line for a non-ASCII ``char`` outside strings and comments: what it is, and the ASCII it
    stands in for when it has a look-alike (`＝`, `“`, `–`, a no-break space) that the language uses."""
    name = chars.describe(char)
    if chars.unseen(char):
        return (f"{name} is an invisible control character (it can make the text display otherwise than it "
                "parses): delete it")
    plain = chars.lookalike(char)
    if plain is None:
        return (f"{chars.shown(char)} is {name}: names, keys and numbers are ASCII (`[A-Za-z_][A-Za-z0-9_]*`); "
                "other text goes in a string `\"...\"` or after `#`")
    if plain == " ":
        return f"{name} is not an ordinary space: write a space (U+0020)"
    if not all(ch.isalnum() or ch in _ascii_used() for ch in plain):
        return f"{chars.shown(char)} is {name}, the language has no `{plain}` either; {hint}"
    return f"{chars.shown(char)} is {name}, not ASCII `{plain}`: write `{plain}`"


@lru_cache(maxsize=1)
def _ascii_used() -> frozenset[str]:
    """The punctuation the language is written with: its literal tokens' characters, and those that open or sit
    in its pattern tokens (strings, comments, negative numbers, metrics, comparisons)."""
    literal = "".join(t.pattern.value for t in build_parser().terminals if t.pattern.type == "str")
    return frozenset(ch for ch in literal + '"#-@._<>' if not ch.isalnum())


def _misread(parser: Lark, text: str, tok: Token) -> parse_hints.Hint | None:
    """A mistake the parser only notices a token or more later (`cascadec.parse_hints`)."""
    tokens = _tolerant_tokens(parser, text[:tok.end_pos]) or []
    if tokens and tokens[-1].start_pos == tok.start_pos:
        tok = tokens.pop()  # typed without context: a reserved word is its keyword here
    after = (_tolerant_tokens(parser, text[tok.end_pos:tok.end_pos + 200]) or [None])[0]
    balanced = _item_starts(parser, text) is not None
    return (parse_hints.keyword_as_name(keywords(parser), tokens, tok, after)
            or parse_hints.misplaced_item(tokens, tok, balanced) or parse_hints.schedule_without_arrow(tokens, tok)
            or parse_hints.and_in_until(tokens, tok) or parse_hints.misspelt_block(keywords(parser), tokens, tok))


_DIGITS = re.compile(r"[0-9_]*")  # matches at any position, possibly empty


def _number_mistake(parser: Lark, text: str, tok: Token) -> tuple[str, Token, str, str] | None:
    """(message, token to point at, label, help) for a number written as in another language: `.5`, `5.`,
    `2 k` (a unit after a space) or `1,000` (a thousands separator); None otherwise."""
    before = _tolerant_tokens(parser, text[:tok.start_pos]) or []
    prev = before[-1] if before else None
    prev_type = prev.type if prev is not None else ""
    glued = prev is not None and prev.end_pos == tok.start_pos
    found = _DIGITS.match(text, tok.end_pos) if tok.type == "DOT" else None
    digits = found.group() if found else ""
    if digits and not (glued and prev_type in ("NAME", "NUM", "RPAR")):
        return "a number starts with a digit", tok, "no digit before `.`", f"write `0.{digits}`"
    if tok.type == "DOT" and glued and prev_type == "NUM":
        return "a number ends with a digit", tok, "no digit after `.`", f"write `{prev}.0` or `{prev}`"
    if prev_type == "NAME" and str(prev) in UNITS and len(before) > 1 \
            and before[-2].type == "NUM" and before[-2].end_pos != prev.start_pos:
        return (f"a space between the number `{before[-2]}` and its unit `{prev}`", prev, "separated from its number",
                f"write the unit directly after the number: `{before[-2]}{prev}`")
    if tok.type == "NUM" and glued and prev_type == "COMMA" and len(before) > 1 \
            and before[-2].type == "NUM" and before[-2].end_pos == tok.start_pos - 1:
        return ("`,` is not a thousands separator", prev, "separates items, not digits",
                f"write `{before[-2]}{tok}` or `{before[-2]}_{tok}`")
    return None


MAX_SYNTAX_ERRORS = 10
_ITEM_STARTS = {"IMPORT", "DOMAIN", "DEFAULTS", "RESOURCES", "STAGE"}


def _error_pos(exc: UnexpectedInput) -> int | None:
    """Character offset of a syntax error, or None at the end of the file (nothing after it to recover)."""
    if isinstance(exc, UnexpectedCharacters):
        return exc.pos_in_stream
    token = getattr(exc, "token", None)
    if isinstance(exc, UnexpectedToken) and isinstance(token, Token) and token.type != "$END":
        return token.start_pos
    return None


def _recovery_pos(parser: Lark, exc: UnexpectedInput, text: str) -> int | None:
    """Where recovery starts: the error, or the reserved word after a dangling `=` (`_dangling_assign`)."""
    pos = _error_pos(exc)
    if pos is not None and isinstance(exc, UnexpectedToken):
        dangling = _dangling_assign(parser, text, pos)
        if dangling is not None:
            return dangling[1].start_pos
    return pos


def _tolerant_tokens(parser: Lark, text: str, limit: int = 100) -> list[Token] | None:
    """The tokens of ``text`` (context-free lexing: reserved words are always keywords), skipping up to
    ``limit`` characters that start no token; None if there are more."""
    for _ in range(limit):
        try:
            return list(parser.lex(text))
        except UnexpectedCharacters as exc:
            text = text[:exc.pos_in_stream] + " " + text[exc.pos_in_stream + 1:]
    return None


def _dangling_assign(parser: Lark, text: str, pos: int) -> tuple[Token, Token] | None:
    """``(=, keyword)`` when the last reserved word before ``pos`` that starts an item directly follows an `=`
    (`base =` and then `stage ...` on the next line): the value is missing. The contextual lexer reads
    the keyword as a name there, so the parser only fails later, at a confusing place."""
    tokens = _tolerant_tokens(parser, text[:pos + 1])
    if not tokens:
        return None
    starts = [k for k, t in enumerate(tokens) if t.type in _ITEM_STARTS or t.type == "CASCADE"]
    if not starts or starts[-1] == 0 or tokens[starts[-1] - 1].type != "EQUAL":
        return None
    return tokens[starts[-1] - 1], tokens[starts[-1]]


def _is_key(tokens: list[Token], k: int) -> bool:
    """Token ``k`` is the key of `key = value` (not the name in `stage NAME =` or `eval NAME =`)."""
    return (tokens[k].type == "NAME" and k + 1 < len(tokens) and tokens[k + 1].type == "EQUAL"
            and (k == 0 or tokens[k - 1].type not in ("STAGE", "EVAL")))


def _item_starts(parser: Lark, text: str) -> list[int] | None:
    """Offsets where an item of a file or of the cascade block begins (`import`, `domain`, `defaults`,
    `resources`, `stage`, `key =` at depth 1), plus where the cascade block closes; None when the text does not
    lex or its brackets do not balance (item boundaries would then be guesses)."""
    tokens = _tolerant_tokens(parser, text)
    if tokens is None:
        return None
    starts: list[int] = []
    depth = 0
    for k, tok in enumerate(tokens):
        if tok.type in _PAIRS:
            depth -= 1
            if depth < 0:
                return None
            if depth == 0:
                starts.append(tok.start_pos)
        elif depth <= 1 and (tok.type in _ITEM_STARTS or _is_key(tokens, k) and depth == 1):
            starts.append(tok.start_pos)
        if tok.type in _PAIRS.values():
            depth += 1
    return starts if depth == 0 else None


def _recovery_region(parser: Lark, text: str, pos: int) -> tuple[int, int] | None:
    """The item to blank out so that parsing can go on after an error at ``pos``: the item that holds it, or
    the item before when the error is the first token of an item (the one before did not finish)."""
    starts = _item_starts(parser, text)
    if not starts:
        return None
    before = [s for s in starts if s <= pos]
    if not before:
        return None
    start = before[-1]
    if start == pos and len(before) > 1:
        start = before[-2]
    after = [s for s in starts if s > start]
    return start, after[0] if after else len(text)


def _syntax_errors(parser: Lark, first: UnexpectedInput, text: str, path: str) -> list[Diagnostic]:
    """The first syntax error, then (up to `MAX_SYNTAX_ERRORS`) later ones: blank out the item that holds each
    error, keeping line breaks so positions stay put, and parse again. Only errors after the blanked item are
    kept, so a recovery that went wrong cannot report the same place twice or point backwards."""
    diagnostics = [_syntax_diagnostic(parser, first, text, path)]
    exc, current = first, text
    while len(diagnostics) < MAX_SYNTAX_ERRORS:
        pos = _recovery_pos(parser, exc, current)
        region = _recovery_region(parser, current, pos) if pos is not None else None
        if region is None:
            break
        start, end = region
        current = current[:start] + re.sub(r"[^\n]", " ", current[start:end]) + current[end:]
        try:
            parser.parse(current)
            break
        except UnexpectedInput as nxt:
            nxt_pos = _recovery_pos(parser, nxt, current)
            if nxt_pos is None or nxt_pos < end or nxt_pos <= pos:
                break
            diagnostics.append(_syntax_diagnostic(parser, nxt, current, path))
            exc = nxt
    return diagnostics


def parse(text: str, path: str = "<string>") -> tuple[ast.Module | None, list[Diagnostic]]:
    """Parse ``text``; on syntax errors return ``(None, CAS1xx diagnostics)`` (several when the items holding
    them can be skipped, see `_syntax_errors`)."""
    with _no_cycle_collection():
        return _parse(build_parser(), text, path)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off while a parse allocates its tree and AST, which hold no cycles (refcounts free
    them): each of its full collections walks every object built so far, so that on 60,000 inline rows it took
    more than half of a lint's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse(parser: Lark, text: str, path: str) -> tuple[ast.Module | None, list[Diagnostic]]:
    try:
        tree = parser.parse(text)
    except UnexpectedInput as exc:
        return None, _syntax_errors(parser, exc, text, path)
    deep = _too_deep(text, path)
    if deep is not None:
        return None, [deep]
    try:
        return ToAst(path).transform(tree), []
    except VisitError as exc:
        if isinstance(exc.orig_exc, StringEscapeError):
            return None, [_escape_error(exc.orig_exc)]
        raise


def _escape_error(exc: StringEscapeError) -> Diagnostic:
    if exc.surrogate is not None:
        return make("CAS103", f"`{exc.surrogate}` in a string is half of a surrogate pair, not a character",
                    exc.span, label="this string", help="write the character itself, or both halves of its pair, "
                    "high then low (e.g. `\\ud83d\\ude00`)")
    return make("CAS103", "invalid escape in string", exc.span, label="this string",
                help="write a backslash as `\\\\`; valid escapes: `\\n`, `\\t`, `\\\"`, `\\\\`, `\\uXXXX`")
