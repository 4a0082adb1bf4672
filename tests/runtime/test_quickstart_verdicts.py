"""bench/quickstart_seeds.py's two criteria, read from a run directory written by hand."""

import json
from pathlib import Path

from bench.quickstart_seeds import verdicts
from test_quickstart_chain import tiny_quickstart


def write_run(tmp_path: Path, scores: dict[str, dict[str, float]], teachers: dict[str, str]) -> tuple[Path, Path]:
    spec = tmp_path / "q.cascade"
    spec.write_text(tiny_quickstart())
    run = tmp_path / "run"
    (run / "stages" / "mopd").mkdir(parents=True)
    (run / "stages" / "mopd" / "teachers.json").write_text(json.dumps({"teachers": teachers}))
    lines = [json.dumps({"stage": st, "step": 1, "domain": key.split(".")[0], "eval": "held", "metric": "pass@1",
                         "score": v, "n": 256}) for st, per in scores.items() for key, v in per.items()]
    (run / "evals.jsonl").write_text("\n".join(lines) + "\n")
    return spec, run


def test_grpo_gain_of_two_standard_errors_and_mopd_share_of_its_teacher(tmp_path: Path) -> None:
    scores = {"base": {"arith.held": 0.0, "times.held": 0.0},
              "format": {"arith.held": 0.50, "times.held": 0.40},
              "rl_arith": {"arith.held": 0.62, "times.held": 0.41},   # +0.12, se 0.043: pass
              "rl_times": {"arith.held": 0.60, "times.held": 0.44},    # +0.03: fail
              "mopd": {"arith.held": 0.60, "times.held": 0.40}}       # 0.60/0.62 = 97%: pass; 0.40/0.44: fail
    spec, run = write_run(tmp_path, scores, {"arith": "rl_arith", "times": "rl_times"})
    lines = verdicts(spec, run)
    assert len(lines) == 4
    assert lines[0].startswith("rl_arith on arith.held: +0.120")
    assert lines[0].endswith("(binomial, unpaired) -> PASS (>= 2 SE)")  # records without item_scores
    assert lines[1].startswith("rl_times on times.held: +0.030") and "FAIL" in lines[1]
    assert "mopd on arith.held: 0.600 vs its teacher rl_arith 0.620 (97%) -> PASS" in lines[2]
    assert "mopd on times.held: 0.400 vs its teacher rl_times 0.440 (91%) -> FAIL" in lines[3]


def test_grpo_criterion_uses_the_paired_error_when_records_list_item_scores(tmp_path: Path) -> None:
    spec, run = write_run(tmp_path, {}, {})
    # rl_arith answers 3 more of 10 items and none fewer: d = 3 ones, 7 zeros, se = sqrt(7/30) / sqrt(10)
    items = {"format": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0], "rl_arith": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]}
    (run / "evals.jsonl").write_text("".join(
        json.dumps({"stage": st, "step": 1, "domain": "arith", "eval": "held", "metric": "pass@1",
                    "score": sum(v) / 10, "n": 10, "item_scores": v}) + "\n" for st, v in items.items()))
    (line,) = verdicts(spec, run)
    assert line == "rl_arith on arith.held: +0.300 ± 0.153 (paired) -> FAIL (>= 2 SE)"


def test_a_mopd_stage_that_kept_its_start_says_so(tmp_path: Path) -> None:
    from runtime.state import RunDir

    scores = {"rl_times": {"arith.held": 0.60}, "mopd": {"arith.held": 0.60}}
    spec, run = write_run(tmp_path, scores, {"arith": "rl_times", "times": "rl_times"})
    RunDir(run).update_stage("mopd", status="done", step=0, stop_reason="nothing to distil: every teacher is ...")
    assert verdicts(spec, run) == ["mopd: took no step (nothing to distil: every teacher is ...)",
                                   "mopd on arith.held: 0.600 vs its teacher rl_times 0.600 (100%) -> PASS (>= 95%)"]


def test_records_written_before_item_groups_get_them_from_the_plans_eval_sets(tmp_path: Path) -> None:
    from bench.quickstart_seeds import with_item_groups
    from cascadec.compiler import compile_file
    from runtime.evals import item_groups, load_eval_sets

    spec, _ = write_run(tmp_path, {}, {})
    plan = compile_file(spec).plan
    times = next(s for s in load_eval_sets(plan) if s.domain == "times")
    old = {"stage": "s", "domain": "times", "eval": "held", "score": 0.5, "item_scores": [1.0] * len(times.samples)}
    short = {**old, "item_scores": [1.0]}  # not the eval set's items: left alone
    recorded = {**old, "item_groups": [7] * len(times.samples)}  # recorded by the run: kept
    filled, left, kept = with_item_groups(plan, [old, short, recorded])
    assert filled["item_groups"] == item_groups(times.samples) and "item_groups" not in left
    assert kept["item_groups"] == [7] * len(times.samples)
