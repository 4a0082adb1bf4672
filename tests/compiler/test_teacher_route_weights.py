"""Teacher route weights (`when("value", STAGE, weight = W)`) reach the plan, and enter the stage hash only
when written, so that plans without them keep their hashes."""

from __future__ import annotations

from compiler_helpers import SMALL

from cascadec.compiler import compile_source

ROUTED = "teachers { code = side  default = sft }"


def _compile(teachers: str):
    result = compile_source(SMALL.replace(ROUTED, teachers), "/spec/dir/x.cascade")
    assert result.plan is not None, result.diagnostics
    return {s.name: s for s in result.plan.stages}


def test_weights_reach_the_plan_and_only_written_weights_change_the_hash() -> None:
    plain = _compile(ROUTED)["opd"]
    unweighted = _compile('teachers { routes = [when("code", side)]  default = sft }')["opd"]
    weighted = _compile('teachers { routes = [when("code", side, weight = 0.5)]  default = sft }')["opd"]
    zero = _compile('teachers { routes = [when("code", side, weight = 0)]  default = sft }')["opd"]
    assert plain.teacher_weights == unweighted.teacher_weights == {}
    assert plain.hash == unweighted.hash
    assert weighted.teacher_weights == {"code": 0.5} and zero.teacher_weights == {"code": 0.0}
    assert len({plain.hash, weighted.hash, zero.hash}) == 3
    assert weighted.teachers == plain.teachers


def test_a_bad_weight_is_a_located_diagnostic() -> None:
    text = SMALL.replace(ROUTED, 'teachers { routes = [when("code", side, weight = -1)]  default = sft }')
    result = compile_source(text, "/spec/dir/x.cascade")
    assert result.plan is None
    [diag] = [d for d in result.diagnostics if d.severity == "error"]
    line = text.splitlines().index(next(ln for ln in text.splitlines() if "weight = -1" in ln)) + 1
    assert (diag.code, diag.span.line) == ("CAS201", line)
    assert diag.span.column == text.splitlines()[line - 1].index("-1") + 1
