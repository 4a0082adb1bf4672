"""Property tests: mutated specs never crash the compiler, spans stay inside the file, fmt is stable."""

from __future__ import annotations

import re

from compiler_helpers import SHIPPED, SMALL
from hypothesis import given, settings
from hypothesis import strategies as st

from cascadec.compiler import compile_source
from cascadec.fmt import format_source

SOURCES = [SMALL] + [p.read_text(encoding="utf-8") for p in SHIPPED]
TOKENS = re.compile(r'"[^"\n]*"|[A-Za-z_][A-Za-z0-9_@]*|[0-9][0-9A-Za-z_.+-]*|->|>=|<=|\n|\S')
SNIPPETS = ["{", "}", "(", ")", "[", "]", ",", "=", ":", ".", "->", ">=", "#", '"', "stage", "on", "until",
            "teachers", "best", "base", "0", "-1", "1e9", "1e999", "49k", "6s", "1GiB", "avg@4", "warmup 3", "from",
            "import \"x.cascade\"", "sft", "grpo", "distill", "\n", "\\", "\x00", "é", "steps = 0"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SOURCES))
    tokens = [m.group() for m in TOKENS.finditer(text)]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "swap", "char"]))
        i = draw(st.integers(0, max(len(tokens) - 1, 0)))
        if op == "delete" and tokens:
            del tokens[i]
        elif op == "insert":
            tokens.insert(i, draw(st.sampled_from(SNIPPETS)))
        elif op == "swap" and len(tokens) > 1:
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        else:
            joined = " ".join(tokens)
            k = draw(st.integers(0, len(joined)))
            joined = joined[:k] + draw(st.characters()) + joined[k + 1:]
            tokens = [joined]
    return " ".join(tokens)


@settings(max_examples=150, deadline=None)
@given(mutated())
def test_mutations_never_raise_and_spans_lie_inside_the_file(text: str) -> None:
    result = compile_source(text, "fuzz.cascade")
    assert all(d.code != "CAS999" for d in result.diagnostics), result.diagnostics
    for d in result.diagnostics:
        for label in d.labels:
            source = result.sources[label.span.path]
            assert 0 <= label.span.start <= label.span.end <= len(source)
            assert 1 <= label.span.line <= label.span.end_line <= source.count("\n") + 1


@settings(max_examples=60, deadline=None)
@given(mutated())
def test_fmt_is_idempotent_and_keeps_the_plan(text: str) -> None:
    once, _ = format_source(text, "fuzz.cascade")
    if once is None:
        return
    assert format_source(once, "fuzz.cascade")[0] == once
    before, after = compile_source(text, "fuzz.cascade"), compile_source(once, "fuzz.cascade")
    assert [d.code for d in before.diagnostics] == [d.code for d in after.diagnostics]
    if before.plan is not None:
        assert after.plan is not None
        assert [s.hash for s in before.plan.stages] == [s.hash for s in after.plan.stages]


@settings(max_examples=40, deadline=None)
@given(mutated())
def test_compiling_twice_gives_identical_output(text: str) -> None:
    first, second = compile_source(text, "fuzz.cascade"), compile_source(text, "fuzz.cascade")
    assert first.diagnostics == second.diagnostics
    assert (first.plan.to_json() if first.plan else None) == (second.plan.to_json() if second.plan else None)
