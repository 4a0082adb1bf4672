"""Help lines whose suggestion, applied as written, lints clean: each case is a spec with one mistake, the
code and help it gets, and the same spec with the help applied, which must compile without any diagnostic."""

from __future__ import annotations

import pytest

from cascadec.compiler import compile_source
from cascadec.diagnostics import Diagnostic
from cascadec.report_diagnostics import render_full

FRAME = '''cascade "helps" {{
  base = model(tiny(llama))
  domain d {{
    train = inline([{{prompt = "1+1", answer = "2"}}])
{domain}
  }}
  stage s = sft(base) on d {{ steps = 1  lr = 1e-5 }}
{stages}
}}
'''
R = "    reward = exact()\n"
EVAL = R + '    eval h = inline([{prompt = "2+2", answer = "4"}])'
GRPO = '  stage g = grpo(s) on d { steps = 1  lr = 1e-6 }'
DISTILL = '  stage t = distill(s) on d {{ teachers {{ d = {teacher} }}  steps = 1  lr = 1e-6 }}'

# (case id, domain lines, stage lines, code, help, domain lines fixed, stage lines fixed)
CASES = [
    ("misspelt block keyword", R, '  stage t = distill(s) on d { teacher { d = base }  steps = 1  lr = 1e-6 }',
     "CAS100", "did you mean `teachers`?",
     R, '  stage t = distill(s) on d { teachers { d = base }  steps = 1  lr = 1e-6 }'),
    ("misspelt reward", "    rewad = exact()", GRPO, "CAS301", "did you mean `reward`?", R, GRPO),
    ("decontaminate without evals", R + "    decontaminate = yes", "", "CAS200",
     "write `decontaminate = off`, or add an `eval NAME = ...` to it and write `decontaminate = on`",
     R + "    decontaminate = off", ""),
    ("decontaminate without evals, the other half", R + "    decontaminate = yes", "", "CAS200",
     "add an `eval NAME = ...` to it and write `decontaminate = on`", "    decontaminate = on\n" + EVAL, ""),
    ("student among its best candidates", EVAL, DISTILL.format(teacher="best(t, s by d.h)"), "CAS305",
     "name an earlier checkpoint instead, e.g. `base`", EVAL, DISTILL.format(teacher="best(base, s by d.h)")),
    ("reward model not a hub id", '    reward = reward_model("org//rm")', "", "CAS325",
     "did you mean the hub id `org/rm`?", '    reward = reward_model("org/rm")', ""),
    ("judge model not a hub id", '    reward = judge("-org/judge", mode = pointwise)', "", "CAS325",
     "did you mean the hub id `org/judge`?", '    reward = judge("org/judge", mode = pointwise)', ""),
    ("avg@0", EVAL + " { metric = avg@0 }", "", "CAS201",
     "write e.g. `metric = pass@1`, or `metric = avg@4  temperature = 0.6`",
     EVAL + " { metric = avg@4  temperature = 0.6 }", ""),
]


def _compile(domain: str, stages: str) -> list[Diagnostic]:
    return compile_source(FRAME.format(domain=domain, stages=stages), "helps.cascade").diagnostics


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_help_applied_lints_clean(case: tuple[str, ...]) -> None:
    _, domain, stages, code, help_, fixed_domain, fixed_stages = case
    found = _compile(domain, stages)
    fixed = FRAME.format(domain=fixed_domain, stages=fixed_stages)
    assert [d.code for d in found] == [code], [(d.code, d.message) for d in found]
    assert help_ in (found[0].help or "")
    result = compile_source(fixed, "helps.cascade")
    assert result.diagnostics == [], render_full(result.diagnostics, result.sources)
