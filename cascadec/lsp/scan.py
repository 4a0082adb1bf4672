"""What the text around the cursor means, for completion, hover and go-to-definition.

The text being edited usually does not parse, so this works on the raw text with comments and string
contents blanked out (offsets unchanged): it finds the innermost open block and what opened it, the word at
the cursor, and where stages, domains and evals are declared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMMENT_OR_STRING = re.compile(r'#[^\n]*|"(?:\\.|[^"\\\n])*"?')
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# what opened a block, matched at the end of the text between the previous brace and the `{`
_OPENERS = re.compile(
    r"""(?:\bstage\s+(?P<stage>\w+)\s*=\s*(?P<stage_kind>\w+)\s*\([^()]*\)\s*(?:on\s*(?:\w+|\[[^\]]*\]))?
       |\bdefaults\s+(?P<defaults_kind>\w+)
       |\bdomain\s+(?P<domain>\w+)
       |\beval\s+\w+\s*=[^{}]*\)
       |\b(?P<resources>resources)
       |\b(?P<teachers>teachers)
       |\bcascade\s*"[^"\n]*")\s*$""",
    re.VERBOSE,
)


def mask(text: str) -> str:
    """``text`` with comments and the insides of strings replaced by spaces (quotes kept)."""
    def blank(m: re.Match[str]) -> str:
        s = m.group(0)
        if s.startswith("#"):
            return " " * len(s)
        return '"' + " " * (len(s) - 2) + ('"' if len(s) > 1 and s.endswith('"') else " ")

    return _COMMENT_OR_STRING.sub(blank, text)


@dataclass(frozen=True)
class Block:
    """The innermost block around a position: ``kind`` is one of top, cascade, stage, domain, eval,
    resources, teachers, value (a record or other braces); ``name`` is the stage kind of a stage or
    `defaults` block, the domain's name of a domain block."""

    kind: str
    name: str = ""


def block_at(masked: str, offset: int) -> Block:
    stack: list[Block] = []
    last = 0
    for m in re.finditer(r"[{}]", masked[:offset]):
        if m.group(0) == "{":
            stack.append(_opener(masked[last:m.start()], stack[-1] if stack else None))
        elif stack:
            stack.pop()
        last = m.end()
    return stack[-1] if stack else Block("top")


def _opener(header: str, outer: Block | None) -> Block:
    m = _OPENERS.search(header)
    if m is None:
        return Block("value")
    if m.group("stage_kind") or m.group("defaults_kind"):
        return Block("stage", m.group("stage_kind") or m.group("defaults_kind"))
    if m.group("domain"):
        return Block("domain", m.group("domain"))
    for kind in ("resources", "teachers"):
        if m.group(kind):
            return Block(kind)
    if m.group(0).lstrip().startswith("eval"):
        return Block("eval", outer.name if outer else "")
    return Block("cascade")


def word_at(text: str, offset: int) -> tuple[str, int, int] | None:
    """The identifier touching ``offset`` and its [start, end) offsets."""
    for m in _WORD.finditer(text, max(0, offset - 200), offset + 200):
        if m.start() <= offset <= m.end():
            return m.group(0), m.start(), m.end()
    return None


@dataclass(frozen=True)
class Declarations:
    """Declared names → offset of the name in the text."""

    stages: dict[str, int]
    domains: dict[str, int]
    evals: dict[str, int]  # "domain.eval"


def declarations(masked: str) -> Declarations:
    stages = {m.group(1): m.start(1) for m in re.finditer(r"\bstage\s+(\w+)\s*=", masked)}
    domains = {m.group(1): m.start(1) for m in re.finditer(r"\bdomain\s+(\w+)\s*\{", masked)}
    evals = {f"{block_at(masked, m.start()).name}.{m.group(1)}": m.start(1)
             for m in re.finditer(r"\beval\s+(\w+)\s*=", masked)}
    return Declarations(stages, domains, evals)


def imports(text: str) -> list[str]:
    """The paths named by `import "..."` lines, as written."""
    return re.findall(r'^\s*import\s+"([^"\n]+)"', text, re.MULTILINE)
