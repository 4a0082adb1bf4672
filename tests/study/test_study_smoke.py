"""End to end: bench/study.py runs the study design through the real CLI and writes its report.

The CPU-sized spec on SmolLM2-135M takes about 15 minutes per seed on 2 shared cores, far over a test's
budget, so this test runs the same spec with the base model swapped for a tiny random-init llama: it checks
the driver (seed rewrite, compile, run, resume, report), not learning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_SPEC = ROOT / "examples" / "study" / "study-cpu.cascade"
PACKAGED = 'model(packaged("smollm2-135m-instruct"))'
TINY = ("model(tiny(llama, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1, "
        "num_attention_heads = 2, num_key_value_heads = 1))")


@pytest.mark.slow
def test_study_driver_end_to_end(study, tmp_path, capfd):
    text = CPU_SPEC.read_text()
    assert PACKAGED in text
    spec = tmp_path / "study-tiny.cascade"
    shutil.copytree(CPU_SPEC.parent / "data", tmp_path / "data")  # the `json` domain's rows, relative to the spec
    # seed 7 in the file: the run's plan must say 0, the seed the driver asked for.
    # The tiny model's byte tokenizer makes B's prompts longer than SmolLM2's 128-token SFT rows.
    tiny = text.replace(PACKAGED, TINY).replace("device = auto", "device = cpu").replace("max_seq = 128", "max_seq = 256")
    spec.write_text(study.with_seed(tiny, 7))
    out = tmp_path / "results" / "study.md"
    argv = [str(spec), "--seeds", "1", "--runs", str(tmp_path / "runs"), "--out", str(out)]
    assert study.main(argv) == 0, capfd.readouterr()
    run = tmp_path / "runs" / "seed0"
    assert json.loads((run / "plan.json").read_text())["seed"] == 0
    stages = {json.loads(line)["stage"] for line in (run / "evals.jsonl").read_text().splitlines()}
    assert stages == {"base", "format", "rl_arith", "warm_json", "rl_json", "mopd", "grpo_mix"}
    assert not list(tmp_path.glob(".study-tiny.seed*.cascade"))  # the seeded copies are gone
    report = out.read_text()
    assert "| grpo_mix |" in report and "**Verdict.**" in report and "in 1 seed; no uncertainty" in report
    assert (out.parent / "study-curves.png").is_file() and (out.parent / "study-seed0-cascade.png").is_file()
    # A second call finds the run finished: every stage is skipped and the report is rewritten.
    capfd.readouterr()
    assert study.main(argv) == 0
    assert capfd.readouterr().out.count("done, unchanged; skipped") == 6
    assert out.read_text() == report
