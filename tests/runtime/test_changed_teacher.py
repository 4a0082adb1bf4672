"""A changed external teacher re-runs the distill stage that learns from it, and nothing else.

Issue 13: a checkpoint from outside the file is part of the stage hashes through its identity (a content
hash for a local directory), "so a changed teacher retrains what depends on it". Here real stages run in
subprocesses on a tiny model: `cascadec run spec.cascade` (compile, render, run) finishes, the teacher's
files change, and the next `cascadec run spec.cascade` re-runs the distill stage only. A build compiled
before the change is refused before any stage runs, with the command that recompiles it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cascadec_runtime_plans import TINY, console, run_ok

from cascadec.compiler import compile_file
from cascadec.render import render_plan
from runtime.models import load_model, save_checkpoint
from runtime.orchestrator import run
from runtime.state import RunDir, read_jsonl

SPEC = """cascade "teach" {
  seed = 0
  base = model(tiny(llama, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1,
                    num_attention_heads = 2, num_key_value_heads = 1))
  checkpoints = { teacher = model("./teacher") }
  resources { gpus = 1  device = cpu  precision = fp32  engine = hf }
  domain add {
    train = inline([{prompt = "1+1=", answer = "2"}, {prompt = "2+1=", answer = "3"}])
  }
  stage warm = sft(base) on add { steps = 1  batch_size = 2  lr = 1e-3 }
  stage opd = distill(base) on add { steps = 1  prompts_per_step = 2  rollouts_per_prompt = 2  max_response = 3
                                     lr = 1e-3  teachers { default = teacher } }
}
"""


def cascadec_run(root: Path, rd: RunDir) -> tuple[Path, str]:
    """What `cascadec run teach.cascade` does: compile (the teacher's identity is read now), render, run;
    returns the build and the run's output."""
    result = compile_file(root / "teach.cascade", build_data=True)
    assert result.plan is not None, [d.message for d in result.diagnostics]
    build = render_plan(result.plan, root / "build")
    return build, run_ok(build, rd)


def written(rd: RunDir, stage: str) -> int:
    """When the stage's final checkpoint was written (ns): a stage that re-ran wrote a new one."""
    return (rd.final(stage) / "model.safetensors").stat().st_mtime_ns


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CASCADEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    model, tok = load_model(TINY, seed=7)  # weights other than the student's
    save_checkpoint(model, tok, tmp_path / "teacher")
    (tmp_path / "teach.cascade").write_text(SPEC)
    return tmp_path


def test_a_changed_teacher_reruns_the_distill_stage_only(root: Path) -> None:
    rd = RunDir(root / "runs" / "teach")
    stale, _ = cascadec_run(root, rd)
    first = rd.read_state()["stages"]
    assert first["warm"]["status"] == first["opd"]["status"] == "done"
    before = {name: written(rd, name) for name in ("warm", "opd")}
    loss_before = read_jsonl(rd.metrics("opd"))[-1]["loss"]

    model, tok = load_model(TINY, seed=11)  # the teacher is retrained elsewhere: new weights, same files
    save_checkpoint(model, tok, root / "teacher")
    out = console()
    assert run(stale, rd.root, console=out) == 2  # the build compiled before the change
    text = out.file.getvalue()
    assert "checkpoint `teacher`" in text and "changed since" in text and "cascadec run" in text
    assert written(rd, "opd") == before["opd"]  # refused before any stage ran

    _, text = cascadec_run(root, rd)
    second = rd.read_state()["stages"]
    assert "warm: done, unchanged; skipped" in text and "opd: done, unchanged" not in text
    assert written(rd, "warm") == before["warm"] and written(rd, "opd") != before["opd"]
    assert second["warm"]["hash"] == first["warm"]["hash"] and second["opd"]["hash"] != first["opd"]["hash"]
    assert second["opd"]["status"] == "done"
    assert read_jsonl(rd.metrics("opd"))[-1]["loss"] != loss_before  # distilled from the new teacher
