"""AST of a `.cascade` file: plain frozen dataclasses, every node with the `Span` of its text.

Values stay as written (a quantity keeps its unit, a name stays a name); the typed model
(`cascadec.model`) gives them meaning per key, so one value syntax serves every key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Union

from cascadec.diagnostics import Span


@dataclass(frozen=True)
class Ident:
    name: str
    span: Span


# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class Num:
    """A number as written; ``unit`` is the suffix of a quantity (``49k`` → 49, ``k``) or None. ``value`` is
    an exact int for an integer literal, else a float."""

    value: int | float
    is_int: bool
    unit: str | None
    text: str
    span: Span


@dataclass(frozen=True)
class Str:
    value: str
    span: Span


@dataclass(frozen=True)
class Metric:
    """``avg@4``: ``kind`` = avg, ``k`` = 4."""

    kind: str
    k: int
    span: Span


@dataclass(frozen=True)
class Pair:
    """``name: value`` inside a list (a weighted domain)."""

    key: Ident
    value: "Value"
    span: Span


@dataclass(frozen=True)
class ListV:
    items: tuple["Value | Pair", ...]
    span: Span


@dataclass(frozen=True)
class TupleV:
    items: tuple["Value", ...]
    span: Span


@dataclass(frozen=True)
class KwArg:
    key: Ident
    value: "Value"
    span: Span


@dataclass(frozen=True)
class Dotted:
    """``domain.eval``."""

    first: Ident
    second: Ident
    span: Span


@dataclass(frozen=True)
class Call:
    """``func(args, key = value [by domain.eval])``."""

    func: Ident
    args: tuple["Value", ...]
    kwargs: tuple[KwArg, ...]
    by: Dotted | None
    span: Span


@dataclass(frozen=True)
class Record:
    entries: tuple[KwArg, ...]
    span: Span


@dataclass(frozen=True)
class Schedule:
    """``peak -> end kind [warmup N [from start]]`` or ``peak warmup N [from start]``."""

    peak: Num
    end: Num | None
    kind: Ident | None
    warmup: Num | None
    warmup_from: Num | None
    span: Span


Value = Union[Num, Str, Metric, Ident, ListV, TupleV, Call, Record, Schedule]


# ---------------------------------------------------------------- items


@dataclass(frozen=True)
class Assign:
    key: Ident
    value: Value
    span: Span


@dataclass(frozen=True)
class EvalDecl:
    name: Ident
    data: Value
    body: tuple[Assign, ...]
    span: Span


@dataclass(frozen=True)
class Domain:
    name: Ident
    assigns: tuple[Assign, ...]
    evals: tuple[EvalDecl, ...]
    span: Span


@dataclass(frozen=True)
class Resources:
    assigns: tuple[Assign, ...]
    span: Span


@dataclass(frozen=True)
class Teachers:
    assigns: tuple[Assign, ...]
    span: Span


@dataclass(frozen=True)
class TeacherScore:
    """``teacher(domain).eval`` on the right of a threshold (``func`` is checked to be ``teacher``)."""

    func: Ident
    domain: Ident
    eval: Ident
    span: Span


@dataclass(frozen=True)
class Threshold:
    ref: Dotted
    op: str
    value: Num | None
    teacher: TeacherScore | None
    span: Span


@dataclass(frozen=True)
class StepsCond:
    key: Ident
    op: str
    value: Num
    span: Span


@dataclass(frozen=True)
class Plateau:
    func: Ident
    ref: Dotted
    kwargs: tuple[KwArg, ...]
    span: Span


Cond = Union[Threshold, StepsCond, Plateau]


@dataclass(frozen=True)
class Until:
    conds: tuple[Cond, ...]
    span: Span


StageItem = Union[Assign, Resources, Teachers, Until]


@dataclass(frozen=True)
class Defaults:
    kind: Ident
    items: tuple[StageItem, ...]
    span: Span


@dataclass(frozen=True)
class Stage:
    name: Ident
    kind: Ident
    parent: Ident
    on: Ident | ListV | None
    items: tuple[StageItem, ...]
    span: Span


CascadeItem = Union[Assign, Domain, Defaults, Resources, Stage]


@dataclass(frozen=True)
class Cascade:
    name: Str
    items: tuple[CascadeItem, ...]
    span: Span


@dataclass(frozen=True)
class Import:
    path: Str
    span: Span


@dataclass(frozen=True)
class Module:
    """One parsed file: its imports, its cascade blocks (one in a main file) and top-level items."""

    path: str
    imports: tuple[Import, ...]
    cascades: tuple[Cascade, ...]
    items: tuple[Union[Domain, Defaults, Resources], ...]
    span: Span


@dataclass(frozen=True)
class SpecView:
    """The main file merged with its imports: imported items first, in import order, then the main file's.

    ``cascade`` is the main file's cascade block (None when it has none; CAS311 reports that).
    """

    path: str
    main: Module
    modules: tuple[Module, ...]
    cascade: Cascade | None
    assigns: tuple[Assign, ...]
    domains: tuple[Domain, ...]
    defaults: tuple[Defaults, ...]
    resources: tuple[Resources, ...]
    stages: tuple[Stage, ...]

    @cached_property
    def calls(self) -> tuple[Call, ...]:
        """Every call of every module (`calls`), found once for all the checks that look for calls."""
        return tuple(call for mod in self.modules for call in calls(mod))


# nodes that hold no call; with spans they are most of a file's nodes (a spec of 150,000 inline rows has millions)
_LEAVES = (Ident, Num, Str, Metric, Dotted, Span, str, int, float, type(None))
_CHILDREN: dict[type, tuple[str, ...]] = {}


def _children(cls: type) -> tuple[str, ...]:
    """The fields of node class ``cls`` that may hold a call (all but its span)."""
    names = _CHILDREN.get(cls)
    if names is None:
        fields = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()
        names = _CHILDREN[cls] = tuple(f.name for f in reversed(fields) if f.name != "span")
    return names


def calls(node: object) -> list[Call]:
    """Every call in the AST ``node``, nested ones included (``model(tiny(llama, ...))``), outer before inner
    and in source order. Iterative: nesting depth costs no recursion."""
    found: list[Call] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (tuple, list)):
            stack.extend(reversed(item))
        elif not isinstance(item, _LEAVES):
            if isinstance(item, Call):
                found.append(item)
            stack.extend(getattr(item, name) for name in _children(type(item)))
    return found
