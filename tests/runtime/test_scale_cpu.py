"""bench/scale.py: the spec it writes compiles to the intended plan, its figures follow the definitions in
its docstring, and its CPU path (tiny shape, gloo, FSDP2 on 1 and 2 processes through the rendered
launch.sh) runs end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench import gpu_common, scale


def _args(**kw) -> argparse.Namespace:
    base = {"shape": "qwen2.5-1.5b", "device": "cuda", "micro_batch": 16, "prompt_words": 64, "steps": 3,
            "prompts": 16, "group": 8, "new": 128}
    return argparse.Namespace(**{**base, **kw})


def test_spec_compiles_to_fsdp2_on_n_gpus_with_the_1_5b_shape(tmp_path):
    from cascadec.compiler import compile_file

    spec = tmp_path / "s.cascade"
    # bench/scale.py writes the tokenizer before the spec, as here; lint checks its folder holds one
    gpu_common.build_tokenizer(scale.SHAPES["qwen2.5-1.5b"]["config"]["vocab_size"], tmp_path / "tok")
    spec.write_text(scale.render_spec(_args(), 2, tmp_path / "tok", ["w10 w11", "w12 w13"]))
    result = compile_file(spec)
    assert not [d for d in result.diagnostics if d.severity == "error"], result.diagnostics
    plan = result.plan
    assert [s.name for s in plan.stages] == ["grpo", "mopd"]
    assert plan.stage("mopd").parent == "grpo" and plan.stage("mopd").params.loss == "mopd"
    assert plan.stage("mopd").teachers["default"].stage == "base"
    for stage in plan.stages:
        r = stage.resources
        assert (r.strategy, r.nproc_per_node, r.device, r.precision) == ("fsdp2", 2, "cuda", "bf16")
        assert (stage.params.prompts_per_step, stage.params.rollouts_per_prompt, stage.params.max_response) == (16, 8, 128)
    assert plan.base.kind == "tiny" and plan.base.name == "qwen2"
    assert plan.base.config == scale.SHAPES["qwen2.5-1.5b"]["config"]
    assert plan.base.tokenizer == str(tmp_path / "tok")


def test_the_1_5b_shape_has_about_1_5b_parameters():
    assert 1.4e9 < scale._param_count(scale.SHAPES["qwen2.5-1.5b"]) < 1.6e9


def test_figures_and_efficiency_follow_the_definitions():
    lines = [{"step_time_s": 9.0, "gen_s": 5.0, "response_len": 100.0, "loss": 0.1, "peak_mem_gib": 30.0},
             {"step_time_s": 2.0, "gen_s": 1.0, "response_len": 128.0, "loss": 0.2, "peak_mem_gib": 20.0},
             {"step_time_s": 4.0, "gen_s": 3.0, "response_len": 128.0, "loss": 0.3, "peak_mem_gib": 21.0}]
    f = scale.stage_figures(lines, warmup=1, prompts=16, group=8)
    assert f["steps"] == 3 and f["steps_timed"] == 2
    assert f["step_s"] == 3.0 and f["gen_s"] == 2.0 and f["completion_tokens"] == 16 * 8 * 128
    assert f["rollout_tok_s"] == pytest.approx(16 * 8 * 128 / 2.0)
    assert f["total_tok_s"] == pytest.approx(16 * 8 * 128 / 3.0)
    assert f["peak_gib"] == 21.0  # warm-up excluded
    runs = {"1": {"gpus": 1, "stages": {"grpo": {"total_tok_s": 100.0}}},
            "2": {"gpus": 2, "stages": {"grpo": {"total_tok_s": 150.0}}}}
    scale.efficiencies(runs)
    assert runs["1"]["stages"]["grpo"]["efficiency"] == 1.0
    assert runs["2"]["stages"]["grpo"]["efficiency"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no metrics"):
        scale.stage_figures([], warmup=1, prompts=1, group=1)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cpu_run_on_one_and_two_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "scale.json"
    rc = scale.main(["--shape", "tiny", "--device", "cpu", "--gpus", "1,2", "--prompts", "4", "--group", "2",
                     "--new", "8", "--prompt-words", "6", "--micro-batch", "2", "--steps", "2", "--warmup", "1",
                     "--work", str(tmp_path / "work"), "--out", str(out)])
    assert rc == 0
    payload = json.loads(out.read_text())
    assert set(payload["runs"]) == {"1", "2"}
    for key, run in payload["runs"].items():
        assert "error" not in run
        assert any("stages/grpo/launch.sh" in c for c in run["commands"])
        assert run["environment"]["processes"] == int(key)
        for stage in scale.STAGES:
            f = run["stages"][stage]
            assert f["steps"] == 2 and f["steps_timed"] == 1 and f["step_s"] > 0 and f["total_tok_s"] > 0
            assert all(isinstance(x, float) for x in f["loss"])
            assert f["efficiency"] > 0
        # checkpoints are deleted after the run, metrics stay
        stages = Path(run["log"]).parent / "runs" / "stages"
        assert (stages / "mopd" / "metrics.jsonl").is_file() and not (stages / "grpo" / "final").exists()
    assert payload["runs"]["1"]["stages"]["grpo"]["efficiency"] == 1.0
    table = out.with_suffix(".md").read_text()
    assert "| grpo | 2 |" in table and "| mopd | 1 |" in table
