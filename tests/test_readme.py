"""The README's example spec and commands stay true."""

import re
from pathlib import Path

from cascadec.compiler import compile_source

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_example_spec_compiles_clean():
    block = re.search(r'^cascade "quickstart" \{.*?^\}', README, re.S | re.M)
    assert block, "README has no example cascade block"
    result = compile_source(block.group(0), "README.md")
    assert [d for d in result.diagnostics if d.severity == "error"] == []
    assert result.plan is not None and [s.name for s in result.plan.stages] == ["sft", "a_rl"]


def test_ci_runs_the_readme_test_command():
    command = re.search(r"^(python3 -m pytest[^\n]*)$", README, re.M).group(1)
    assert command in (ROOT / ".ci" / "run").read_text()
