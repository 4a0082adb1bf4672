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
        if d["reward"] is not None:
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


LONG = ('cascade "long" {\n  base = model(tiny(llama))\n  domain arith {\n'
        '    train = gym("basic_arithmetic", size = 2000, seed = 1, min_terms = 2, max_terms = 2, min_digits = 1, '
        'max_digits = 2, operators = ["+", "-"], allow_parentheses = false)\n    reward = gym()\n  }\n'
        '  stage format = sft(base) on [arith] { steps = 6  batch_size = 8  micro_batch = 8  max_seq = 128  '
        'lr = 5e-5  warmup = 2  save_every = 3 }\n'
        '  stage s2 = sft(format) on [arith] { steps = 6  lr = 1e-5 }\n}\n')


def test_long_lines_wrap_as_the_examples_do() -> None:
    out, diagnostics = format_source(LONG)
    assert not diagnostics and out is not None
    assert out.splitlines()[3:10] == [
        '    train = gym("basic_arithmetic", size = 2000, seed = 1, min_terms = 2, max_terms = 2, min_digits = 1, '
        'max_digits = 2,',
        '      operators = ["+", "-"], allow_parentheses = false)',  # after the last comma that fits
        "    reward = gym()",
        "  }",
        "  stage format = sft(base) on [arith] {",  # a long block: its items go below, its `}` on its own line
        "    steps = 6  batch_size = 8  micro_batch = 8  max_seq = 128  lr = 5e-5  warmup = 2  save_every = 3",
        "  }",
    ]
    assert "  stage s2 = sft(format) on [arith] { steps = 6  lr = 1e-5 }" in out  # short lines stay as they are
    assert max(map(len, out.splitlines())) <= 120
    assert format_source(out)[0] == out
    before, after = compile_source(LONG, "long.cascade").plan, compile_source(out, "long.cascade").plan
    assert before is not None and after is not None and _without_origins(before) == _without_origins(after)


def test_a_long_block_line_breaks_between_its_items() -> None:
    items = "  ".join(f"k{i} = {i}" for i in range(40))
    out, _ = format_source(f'cascade "a" {{\n  defaults grpo {{\n    {items}\n  }}\n}}\n')
    assert out is not None and max(map(len, out.splitlines())) <= 120
    assert all(line.startswith("    k") for line in out.splitlines()[2:-2])
