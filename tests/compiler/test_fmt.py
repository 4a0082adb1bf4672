"""The formatter: canonical layout, comments kept, idempotent, plan unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from compiler_helpers import ROOT, SHIPPED

from cascadec.compiler import compile_source
from cascadec.fmt import format_source
from cascadec.contract.plan import Plan


def _without_origins(plan: Plan) -> str:
    data = plan.model_dump(mode="json")
    for st in data["stages"]:
        st["origin"] = None
    for d in data["domains"].values():
        d["origin"] = None
        d["reward"]["origin"] = None
    return repr(data)


def test_layout_is_canonical_and_keeps_comments() -> None:
    messy = ('# head\n\n\n\ncascade   "a"{ # trailing\n       seed=1\n  stage s=sft( base ) on [ m : 1 ,c:2]{\n'
             '     lr = 2e-6   warmup   30 from 2e-7  betas=( 0.9,0.95 )   # why\n        }\n}')
    out, diagnostics = format_source(messy)
    assert not diagnostics
    assert out == ('# head\n\ncascade "a" {  # trailing\n  seed = 1\n  stage s = sft(base) on [m: 1, c: 2] {\n'
                   '    lr = 2e-6 warmup 30 from 2e-7  betas = (0.9, 0.95)  # why\n  }\n}\n')


def test_syntax_errors_are_reported_not_formatted() -> None:
    out, diagnostics = format_source('cascade "a" { seed = }', "bad.cascade")
    assert out is None and diagnostics[0].code == "CAS100"


@pytest.mark.parametrize("spec", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_specs_format_idempotently_and_keep_their_plan(spec: Path) -> None:
    text = spec.read_text(encoding="utf-8")
    once, _ = format_source(text, str(spec))
    assert once is not None
    twice, _ = format_source(once, str(spec))
    assert twice == once
    assert once.count("#") == text.count("#")
    before, after = compile_source(text, str(spec)).plan, compile_source(once, str(spec)).plan
    assert before is not None and after is not None
    assert _without_origins(before) == _without_origins(after)


@pytest.mark.parametrize("spec", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_spec_is_in_canonical_layout(spec: Path) -> None:
    text = spec.read_text(encoding="utf-8")
    assert format_source(text, str(spec))[0] == text, f"run `cascadec fmt {spec.relative_to(ROOT)}`"
