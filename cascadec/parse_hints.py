"""Help for syntax errors whose first unexpected token is not where the mistake is: a reserved word used as
a name, an item in a block that does not take it, a schedule without `->`, `and` in a stop rule.

Each hint reads the tokens before the error (lexed without context, so reserved words are keywords), the
unexpected token and the one after it, and returns ``(message, token to point at, label, help)``, or None
when its mistake is not the one made."""

from __future__ import annotations

import re

from lark import Lark, Token

from cascadec.contract.params import SCHEDULE_KINDS
from cascadec.contract.suggest import suggest

Hint = tuple[str, Token, str, str]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPEN, _CLOSE = {"LPAR", "LSQB", "LBRACE"}, {"RPAR", "RSQB", "RBRACE"}

# what may follow a name but never a keyword: `stage = ...`, `[stage: 1]`, `stage.held`, `best(by, ...)`
_AFTER_NAME = {"EQUAL", "COLON", "DOT", "COMMA", "RPAR", "RSQB"}

# the items each block takes, as the `*_item` rules of grammar.lark list them (`key = value` aside)
_ITEMS = {"top": {"IMPORT", "DOMAIN", "DEFAULTS", "RESOURCES", "CASCADE"},
          "cascade": {"DOMAIN", "DEFAULTS", "RESOURCES", "STAGE"}, "domain": {"EVAL"},
          "stage": {"RESOURCES", "TEACHERS", "UNTIL"}, "defaults": {"RESOURCES", "TEACHERS", "UNTIL"}}
# where each item goes, for the help line
_HOMES = {"RESOURCES": "inside a stage (its own resources) or directly in the `cascade` block (every stage's)",
          "TEACHERS": "inside a `distill` stage", "UNTIL": "inside a stage", "EVAL": "inside a `domain` block",
          "DOMAIN": "directly in the `cascade` block", "STAGE": "directly in the `cascade` block",
          "DEFAULTS": "directly in the `cascade` block", "IMPORT": "at the top of the file, before `cascade`"}


def keywords(parser: Lark) -> dict[str, str]:
    """Terminal type → word, for the grammar's literal words that match the NAME pattern (`STAGE`: `stage`)."""
    return {t.name: t.pattern.value for t in parser.terminals
            if t.pattern.type == "str" and _NAME.fullmatch(t.pattern.value)}


def keyword_as_name(words: dict[str, str], before: list[Token], tok: Token, after: Token | None) -> Hint | None:
    """A reserved word written where a name goes: followed by what only follows a name (`=`, `:`, `.`, `,`,
    `)`, `]`), which no keyword ever is."""
    prev = before[-1] if before else None
    if tok.type in words and after is not None and after.type in _AFTER_NAME:
        word = tok
    elif prev is not None and prev.type in words and tok.type in _AFTER_NAME:
        word = prev
    else:
        return None
    return (f"`{word}` is a reserved word and cannot be a name", word, "reserved word",
            f"rename it here and where it is used, e.g. `{word}_1` (reserved words: "
            + ", ".join(f"`{w}`" for w in sorted(words.values())) + ")")


# the items written `WORD { ... }`, with nothing between the word and the brace
_BRACED = {"RESOURCES", "TEACHERS"}


def misspelt_block(words: dict[str, str], before: list[Token], tok: Token) -> Hint | None:
    """`teacher { ... }`: a name where a block keyword goes, so the parser stops at `{` expecting `=`. Only
    a name close to a block this block takes (`cascadec.contract.suggest`) is reported."""
    if tok.type != "LBRACE" or not before or before[-1].type != "NAME":
        return None
    if len(before) > 1 and before[-2].type in ("EQUAL", "COMMA", "COLON", "DOT", *_OPEN - {"LBRACE"}):
        return None  # part of a value, not an item
    name = before[-1]
    taken = {words[t]: t for t in _BRACED & _ITEMS.get(_block(before[:-1]), set())}
    close = suggest(str(name), taken)
    if close is None:
        return None
    return (f"unknown block `{name}`", name, "not a block", f"did you mean `{close}`?")


_HEADS = {"CASCADE", "DOMAIN", "STAGE", "DEFAULTS", "EVAL", "RESOURCES", "TEACHERS", "LBRACE", "RBRACE"}


def _block(before: list[Token]) -> str:
    """The kind of the innermost block open at the end of ``before``: `top`, `cascade`, `domain`, `stage`,
    `defaults`, or `other` (a record, a bracket, an `eval`, `resources` or `teachers` block)."""
    depth = 0
    for k in range(len(before) - 1, -1, -1):
        t = before[k]
        depth += (t.type in _CLOSE) - (t.type in _OPEN)
        if depth < 0:
            if t.type != "LBRACE" or k == 0 or before[k - 1].type in ("EQUAL", "COMMA", "COLON", *_OPEN):
                return "other"  # a bracket, or a record written as a value
            head = next((h for h in reversed(before[:k]) if h.type in _HEADS), None)
            kind = head.type.lower() if head is not None else "other"
            return kind if kind in _ITEMS else "other"
    return "top"


def misplaced_item(before: list[Token], tok: Token, balanced: bool) -> Hint | None:
    """An item (`resources { }`, `eval`, `until`, ...) inside a block that does not take it, in a file whose
    brackets balance (else the block before it is more likely not closed). Inside a block that does not take
    it, the parser reads `eval`, `teachers` and `until` as a key, so the error comes one token later."""
    item = tok if tok.type in _HOMES else before[-1] if before and before[-1].type in _HOMES else None
    if item is None or not balanced:
        return None
    kind = _block(before[:-1] if item is not tok else before)
    if item.type in _ITEMS.get(kind, ()):
        return None
    where = {"top": "outside the `cascade` block", "other": "in this block"}.get(kind, f"inside a `{kind}` block")
    return (f"`{item}` cannot be {where}", item, "not allowed here",
            f"`{item}` goes {_HOMES[item.type]}; move it there")


def schedule_without_arrow(before: list[Token], tok: Token) -> Hint | None:
    """`lr = 5e-5 cosine`: the parser took the schedule's shape for the next key."""
    if len(before) < 4 or not (before[-1].type == "NAME" and str(before[-1]) in SCHEDULE_KINDS
                               and before[-2].type == "NUM" and before[-3].type == "EQUAL"):
        return None
    key, peak, kind = before[-4], before[-2], before[-1]
    if str(kind) == "constant":
        return ("`constant` after a single learning rate", kind, "not a key",
                f"a constant rate is the number alone: `{key} = {peak}`")
    return (f"a `{kind}` schedule needs `-> END` before its shape", kind, "no `->` before this",
            f"write the rate it ends at after `->`: `{key} = {peak} -> END {kind}`, e.g. `lr = 5e-5 -> 5e-6 {kind}`")


def and_in_until(before: list[Token], tok: Token) -> Hint | None:
    """`until A and B` (or `until A, B`): a stop rule joins its clauses with `or` only."""
    joint = tok if tok.type == "COMMA" else before[-1] if before and str(before[-1]) in ("and", "AND") else None
    if joint is None:
        return None
    depth = 0
    for t in reversed(before[:-1] if joint is not tok else before):
        depth += (t.type in _CLOSE) - (t.type in _OPEN)
        if depth < 0 or (depth == 0 and t.type in ("EQUAL", "RBRACE")):
            return None
        if depth == 0 and t.type == "UNTIL":
            return (f"`{joint}` does not join the clauses of a stop rule", joint, "not a stop-rule operator",
                    "a stage stops as soon as one clause holds: join clauses with `or` (`until math.gsm >= 0.8 or "
                    "steps >= 500`); there is no `and`")
    return None
