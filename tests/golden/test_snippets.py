"""Compact golden cases: a few spec lines each, with the expected diagnostics inline (`snippets.txt`).

Each case is ``## title``, the lines of the snippet, then one ``> CODE LINE:COL message`` line per
diagnostic (line and column counted inside the snippet) and its ``> help: ...`` line. The snippet is placed
inside :data:`FRAME` (a cascade with a base model and a domain `d`); a snippet that declares no stage gets
the stage in :data:`DEFAULT_STAGE`. Regenerate on purpose with ``pytest tests/golden --update-goldens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cascadec.compiler import compile_source

FILE = Path(__file__).with_name("snippets.txt")
FRAME = '''cascade "snippet" {{
  base = model(tiny(llama))
  domain d {{ train = inline([{{prompt = "1+1", answer = "2"}}])  reward = exact() }}
{body}
}}
'''
OFFSET = 3  # lines of FRAME before the snippet
DEFAULT_STAGE = "  stage s = sft(base) { steps = 1  lr = 1e-5 }"


@dataclass
class Case:
    title: str
    body: list[str]
    expected: list[str]


def parse(text: str) -> list[Case]:
    cases: list[Case] = []
    for line in text.splitlines():
        if line.startswith("## "):
            cases.append(Case(line[3:].strip(), [], []))
        elif line.startswith("> ") and cases:
            cases[-1].expected.append(line[2:])
        elif cases and line.strip():
            cases[-1].body.append(line)
    return cases


def actual(case: Case) -> list[str]:
    body = [f"  {line}" for line in case.body]
    if not any(line.lstrip().startswith("stage ") for line in case.body):
        body.append(DEFAULT_STAGE)
    result = compile_source(FRAME.format(body="\n".join(body)), "snippet.cascade", build_data=True)
    out = []
    for d in result.diagnostics:
        span = d.span
        where = f"{span.line - OFFSET}:{span.column - 2}" if span else "-"
        out.append(f"{d.code} {where} {d.message}")
        if d.help:
            out.append(f"help: {d.help}")
    return out


def render(cases: list[Case], results: list[list[str]]) -> str:
    blocks = ["\n".join([f"## {c.title}", *c.body, *(f"> {line}" for line in r)]) for c, r in zip(cases, results)]
    return "\n\n".join(blocks) + "\n"


CASES = parse(FILE.read_text(encoding="utf-8"))


def test_snippets(update_goldens: bool) -> None:
    results = [actual(c) for c in CASES]
    if update_goldens:
        FILE.write_text(render(CASES, results), encoding="utf-8")
        return
    for case, got in zip(CASES, results):
        assert got, f"{case.title}: an invalid snippet must produce a diagnostic"
        assert got == case.expected, case.title
