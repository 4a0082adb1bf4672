"""Lark parse tree → `cascadec.ast` nodes with spans (one Transformer, one method per grammar rule)."""

from __future__ import annotations

import json
import re

from lark import Token, Transformer, v_args

from cascadec import ast
from cascadec.diagnostics import Span

_NUM = re.compile(r"(?P<num>-?[0-9][0-9_]*(\.[0-9]+)?([eE][+-]?[0-9]+)?)(?P<unit>[A-Za-z]+)?")


class StringEscapeError(ValueError):
    """A string literal with an escape JSON does not accept, or one that decodes to a lone surrogate (no
    character: UTF-8 cannot write it into the plan); carries the literal's span and the surrogate, if any."""

    def __init__(self, span: Span, text: str, surrogate: str | None = None) -> None:
        super().__init__(text)
        self.span = span
        self.surrogate = surrogate


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def token_span(path: str, tok: Token) -> Span:
    return Span(path, tok.line or 1, tok.column or 1, tok.end_line or tok.line or 1,
                tok.end_column or tok.column or 1, tok.start_pos or 0, tok.end_pos or 0)


def _none_free(children: list) -> list:
    return [c for c in children if c is not None]


@v_args(meta=True)
class ToAst(Transformer):
    """Builds a `cascadec.ast.Module`; ``path`` is written into every span."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.path, 1, 1, 1, 1, 0, 0)
        return Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column,
                    meta.start_pos, meta.end_pos)

    def _tok(self, tok: Token) -> ast.Ident:
        return ast.Ident(str(tok), token_span(self.path, tok))

    def _num(self, tok: Token) -> ast.Num:
        m = _NUM.fullmatch(str(tok))
        assert m is not None, tok  # the NUM terminal and _NUM are the same pattern
        text = m.group("num").replace("_", "")
        is_int = re.fullmatch(r"-?[0-9]+", text) is not None
        # integers stay exact (a seed above 2^53 must not round); past 2^63 any size is out of range anyway,
        # and Python refuses int() of more than 4300 digits, so those become float (then inf: too large)
        value = int(text) if is_int and len(text) <= 64 else float(text)
        return ast.Num(value, is_int, m.group("unit"), str(tok), token_span(self.path, tok))

    # ------------------------------------------------------------ file structure

    def start(self, meta, children):
        imports = tuple(c for c in children if isinstance(c, ast.Import))
        cascades = tuple(c for c in children if isinstance(c, ast.Cascade))
        items = tuple(c for c in children if not isinstance(c, (ast.Import, ast.Cascade)))
        return ast.Module(self.path, imports, cascades, items, self._span(meta))

    def import_stmt(self, meta, children):
        return ast.Import(self._string(children[0]), self._span(meta))

    def cascade(self, meta, children):
        return ast.Cascade(self._string(children[0]), tuple(children[1:]), self._span(meta))

    def assign(self, meta, children):
        return ast.Assign(self._tok(children[0]), children[1], self._span(meta))

    def domain(self, meta, children):
        body = children[1:]
        return ast.Domain(self._tok(children[0]),
                          tuple(c for c in body if isinstance(c, ast.Assign)),
                          tuple(c for c in body if isinstance(c, ast.EvalDecl)), self._span(meta))

    def eval(self, meta, children):
        name, data, block = children
        return ast.EvalDecl(self._tok(name), data, tuple(block or ()), self._span(meta))

    def plain_block(self, meta, children):
        return list(children)

    def defaults(self, meta, children):
        return ast.Defaults(self._tok(children[0]), tuple(children[1]), self._span(meta))

    def resources(self, meta, children):
        return ast.Resources(tuple(children[0]), self._span(meta))

    def stage(self, meta, children):
        name, kind, parent, on, block = children
        return ast.Stage(self._tok(name), self._tok(kind), self._tok(parent), on, tuple(block),
                         self._span(meta))

    def on_clause(self, meta, children):
        return children[0]

    def stage_block(self, meta, children):
        return list(children)

    def teachers(self, meta, children):
        return ast.Teachers(tuple(children[0]), self._span(meta))

    def until(self, meta, children):
        return ast.Until(tuple(children), self._span(meta))

    # ------------------------------------------------------------ stop rules

    def threshold(self, meta, children):
        ref, op, operand = children
        if isinstance(operand, ast.Num):
            return ast.Threshold(ref, str(op), operand, None, self._span(meta))
        if isinstance(operand, tuple):  # scaled: (factor, teacher score)
            return ast.Threshold(ref, str(op), operand[0], operand[1], self._span(meta))
        return ast.Threshold(ref, str(op), None, operand, self._span(meta))

    def steps_cond(self, meta, children):
        key, op, num = children
        return ast.StepsCond(self._tok(key), str(op), self._num(num), self._span(meta))

    def plateau(self, meta, children):
        return ast.Plateau(self._tok(children[0]), children[1], tuple(children[2:]), self._span(meta))

    def scaled(self, meta, children):
        return (self._num(children[0]), children[1])

    def teacher_score(self, meta, children):
        func, domain, ev = children
        return ast.TeacherScore(self._tok(func), self._tok(domain), self._tok(ev), self._span(meta))

    def dotted(self, meta, children):
        return ast.Dotted(self._tok(children[0]), self._tok(children[1]), self._span(meta))

    # ------------------------------------------------------------ values

    def num(self, meta, children):
        return self._num(children[0])

    def _string(self, tok: Token) -> ast.Str:
        span = token_span(self.path, tok)
        try:
            value = json.loads(str(tok), strict=False)
        except json.JSONDecodeError as exc:
            raise StringEscapeError(span, str(tok)) from exc
        # JSON joins a high and a low `\uXXXX` into one character; what is left is half a character
        if lone := _LONE_SURROGATE.search(value):
            raise StringEscapeError(span, str(tok), f"\\u{ord(lone.group()):04x}")
        return ast.Str(value, span)

    def string(self, meta, children):
        return self._string(children[0])

    def metric(self, meta, children):
        kind, k = str(children[0]).split("@")
        return ast.Metric(kind, int(k), token_span(self.path, children[0]))

    def ident(self, meta, children):
        return self._tok(children[0])

    def list(self, meta, children):
        return ast.ListV(tuple(_none_free(children)), self._span(meta))

    def pair(self, meta, children):
        return ast.Pair(self._tok(children[0]), children[1], self._span(meta))

    def tuple(self, meta, children):
        return ast.TupleV(tuple(_none_free(children)), self._span(meta))

    def call(self, meta, children):
        func, *rest = children
        rest = _none_free(rest)
        by = rest.pop() if rest and isinstance(rest[-1], ast.Dotted) else None
        return ast.Call(self._tok(func), tuple(r for r in rest if not isinstance(r, ast.KwArg)),
                        tuple(r for r in rest if isinstance(r, ast.KwArg)), by, self._span(meta))

    def kwarg(self, meta, children):
        return ast.KwArg(self._tok(children[0]), children[1], self._span(meta))

    def by_clause(self, meta, children):
        return children[0]

    def record(self, meta, children):
        return ast.Record(tuple(children), self._span(meta))

    def schedule(self, meta, children):
        peak, end, kind, warm = children
        warmup, start = warm if warm else (None, None)
        return ast.Schedule(self._num(peak), self._num(end), self._tok(kind), warmup, start, self._span(meta))

    def schedule_warm(self, meta, children):
        peak, (warmup, start) = children
        return ast.Schedule(self._num(peak), None, None, warmup, start, self._span(meta))

    def warmup_clause(self, meta, children):
        tok, start = children
        digits = str(tok).split()[-1]
        # the step count sits at the end of the `warmup N` token; give it its own span
        span = token_span(self.path, tok)
        offset = len(str(tok)) - len(digits)
        steps_span = Span(span.path, span.line, span.column + offset, span.end_line, span.end_column,
                          span.start + offset, span.end)
        steps = ast.Num(float(digits.replace("_", "")), True, None, digits, steps_span)
        return (steps, self._num(start) if start is not None else None)
