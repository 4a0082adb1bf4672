"""End to end: examples/mopd.cascade (side branch + MOPD, tiny model) compiles, runs on CPU, and reports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from runtime.report import load_run, report

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mopd.cascade"
CLI = [sys.executable, "-c", "from cascadec.cli import main; main()"]


def test_example_compiles_to_a_plan_with_a_side_branch_and_teachers(tmp_path):
    out = subprocess.run([*CLI, "compile", str(EXAMPLE), "-o", str(tmp_path)], capture_output=True, text=True, check=False,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    plan = json.loads(next(tmp_path.glob("*/plan.json")).read_text())
    stages = {s["name"]: s for s in plan["stages"]}
    assert [s["name"] for s in plan["stages"]][-1] == "mopd"
    assert stages["side"]["branch"] and not stages["yes_only"]["branch"]
    teachers = stages["mopd"]["teachers"]
    assert teachers["no"] == {"kind": "stage", "stage": "side", "candidates": [], "domain": None, "eval": None}
    assert teachers["default"]["kind"] == "best" and teachers["default"]["candidates"] == ["sft", "yes_only"]


@pytest.mark.slow
def test_example_runs_on_cpu_and_its_report_has_every_stage_and_domain(tmp_path):
    run_dir = tmp_path / "run"
    out = subprocess.run([*CLI, "run", str(EXAMPLE), "-o", str(tmp_path / "build"), "--run-dir", str(run_dir)],
                         capture_output=True, text=True, check=False, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    buf = io.StringIO()
    page = report(run_dir, console=Console(file=buf, width=160, color_system=None))
    summary = load_run(run_dir)
    assert summary.columns == ["base", "sft", "yes_only", "side", "mopd"]
    assert summary.evals == ["no.held", "yes.held"]
    assert all(s.status == "done" for s in summary.stages)
    html = page.read_text()
    assert "side (branch)" in html and html.count("data:image/png;base64,") == 2
    assert "no.held" in buf.getvalue() and "yes_only" in buf.getvalue()

    resolved = json.loads((run_dir / "stages" / "mopd" / "teachers.json").read_text())["teachers"]
    assert resolved["no"] == "side" and resolved["default"] in ("sft", "yes_only")
    mopd = next(s for s in summary.stages if s.name == "mopd")
    assert mopd.stop_reason is None or "teacher(no).held" in mopd.stop_reason or "steps" in mopd.stop_reason
    metrics = summary.metrics["mopd"]
    assert {"reverse_kl", "is_ratio", "gated_frac", "teacher_rows/side"} <= set(metrics[0])
    # the specialised stage forgot `no`; distillation from the side branch brings it back
    assert summary.scores["yes_only"]["no.held"] < summary.scores["mopd"]["no.held"]


def test_a_teacher_that_is_not_an_ancestor_is_a_compile_error(tmp_path):
    from cascadec.compiler import compile_file

    text = EXAMPLE.read_text().replace("teachers { no = side ", "teachers { no = after ")
    text = text.rstrip().removesuffix("}") + "  stage after = sft(mopd) on yes { steps = 1 }\n}\n"
    spec = tmp_path / "bad.cascade"
    spec.write_text(text)
    result = compile_file(spec)
    assert not result.ok
    [diag] = [d for d in result.diagnostics if d.code == "CAS305"]
    assert "`after`" in diag.message and diag.help
