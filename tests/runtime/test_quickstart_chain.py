"""The quickstart's chain shape (SFT -> GRPO -> GRPO -> MOPD with `best(...)` teachers) runs end to end on a
tiny random model: every stage runs, every eval is recorded after every stage, the run ends with the score
table, the per-stage changes and the pointer to `cascadec report`, and the report is written with the MOPD
stage's teachers. Learning gains are the benchmark's job (bench/results/quickstart-cpu.md), not this test's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.cascade"
CLI = [sys.executable, "-c", "from cascadec.cli import main; main()"]
TINY = ('model(tiny(llama, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1, '
        'num_attention_heads = 2, num_key_value_heads = 1))')


def tiny_quickstart() -> str:
    """The quickstart spec with a tiny model, 2 steps per stage and 8-item evals; structure unchanged."""
    text = QUICKSTART.read_text()
    text = re.sub(r'model\(packaged\("[^"]+"\)\)', TINY, text)
    text = re.sub(r"size = \d+", "size = 8", text)
    text = re.sub(r"steps = \d+", "steps = 2", text)
    text = re.sub(r"max_seq = \d+", "max_seq = 512", text)  # the tiny model's tokenizer is one token a byte
    return text.replace("prompts_per_step = 8  rollouts_per_prompt = 8",
                        "prompts_per_step = 2  rollouts_per_prompt = 8")


@pytest.mark.slow
def test_quickstart_chain_runs_every_stage_records_every_eval_and_reports(tmp_path: Path) -> None:
    from cascadec.compiler import compile_source

    spec = tmp_path / "quickstart.cascade"
    spec.write_text(tiny_quickstart())
    plan = compile_source(spec.read_text(), str(spec)).plan
    assert plan is not None
    kinds = [(s.name, s.kind) for s in plan.stages]
    assert [k for _, k in kinds] == ["sft", "grpo", "grpo", "distill"]
    mopd = plan.stages[-1]
    assert all(t.kind == "best" for t in mopd.teachers.values())

    run_dir = tmp_path / "run"
    out = subprocess.run([*CLI, "run", str(spec), "-o", str(tmp_path / "build"), "--run-dir", str(run_dir)],
                         capture_output=True, text=True, check=False, cwd=tmp_path, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]

    state = json.loads((run_dir / "state.json").read_text())
    assert {name: state["stages"][name]["status"] for name, _ in kinds} == {name: "done" for name, _ in kinds}
    records = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    recorded = {(r["stage"], f"{r['domain']}.{r['eval']}") for r in records}
    evals = {f"{d}.held" for d in plan.domains}
    assert recorded >= {(stage, e) for stage in ["base", *(n for n, _ in kinds)] for e in evals}
    assert all(r["n"] == 8 for r in records)
    # per-item scores, one per eval item, whose mean is the score; the change table pairs them
    assert all(len(r["item_scores"]) == 8 and None not in r["item_scores"] for r in records)
    assert all(sum(r["item_scores"]) / 8 == pytest.approx(r["score"]) for r in records)

    resolved = json.loads((run_dir / "stages" / "mopd" / "teachers.json").read_text())["teachers"]
    assert resolved["arith"] in ("format", "rl_arith", "rl_times") and resolved["times"] in ("rl_arith", "rl_times")
    assert "change of each stage against its parent" in log and "±" in log
    assert "standard errors (paired over the same items)" in " ".join(log.split())
    assert f"cascadec report {run_dir}" in log.replace("\n", "")

    report = subprocess.run([*CLI, "report", str(run_dir)], capture_output=True, text=True, check=False,
                            cwd=tmp_path, timeout=300)
    assert report.returncode == 0, report.stdout + report.stderr
    assert (run_dir / "report" / "report.html").is_file() and (run_dir / "report" / "cascade.png").is_file()
