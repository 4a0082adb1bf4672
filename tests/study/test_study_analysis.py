"""The study's analysis on synthetic eval records: per-stage table, curves, steps to 95% of the teacher,
paired comparison, the seed rewrite, and a whole report from synthetic run directories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cascadec.compiler import compile_file

ROOT = Path(__file__).resolve().parents[2]
CPU_SPEC = ROOT / "examples" / "study" / "study-cpu.cascade"


def rec(stage: str, step: int, domain: str, score: float, eval_: str = "held") -> dict:
    return {"stage": stage, "step": step, "domain": domain, "eval": eval_, "metric": "pass@1", "score": score,
            "n": 32}


def synthetic_run(*, teacher_a: float, mopd_a: list[float], grpo_a: list[float], every: int = 2) -> list[dict]:
    """A cascade base -> format -> rl_arith -> rl_json -> {mopd, grpo_mix}: rl_json drops `arith` to 0.1,
    then the arms' `arith` curves are ``mopd_a`` / ``grpo_a`` at steps every, 2*every, ..."""
    out = [rec("base", 0, "arith", 0.0), rec("base", 0, "json", 0.0),
           rec("format", 8, "arith", teacher_a - 0.1), rec("format", 8, "json", 0.0),
           rec("rl_arith", 4, "arith", teacher_a), rec("rl_arith", 4, "json", 0.0),
           rec("rl_json", 4, "arith", 0.1), rec("rl_json", 4, "json", 0.9)]
    for arm, curve in (("mopd", mopd_a), ("grpo_mix", grpo_a)):
        for i, score in enumerate(curve, 1):
            out += [rec(arm, i * every, "arith", score), rec(arm, i * every, "json", 0.8)]
    return out


def test_last_scores_takes_last_step_and_later_line_on_ties(stats):
    records = [rec("s", 2, "a", 0.1), rec("s", 4, "a", 0.3), rec("s", 4, "a", 0.4), rec("s", 3, "a", 0.9)]
    assert stats.last_scores(records) == {"s": {"a.held": 0.4}}


def test_stage_table_mean_std_and_missing_stage(stats):
    runs = [stats.last_scores(synthetic_run(teacher_a=0.8, mopd_a=[0.5], grpo_a=[0.2])),
            stats.last_scores(synthetic_run(teacher_a=0.6, mopd_a=[0.5], grpo_a=[0.2]))]
    del runs[1]["mopd"]
    table = stats.stage_table(runs, ["base", "rl_arith", "mopd", "absent"])
    assert list(table) == ["base", "rl_arith", "mopd"]
    cell = table["rl_arith"]["arith.held"]
    assert cell.mean == pytest.approx(0.7) and cell.std == pytest.approx(math.sqrt(0.02)) and cell.n == 2
    assert table["mopd"]["arith.held"].n == 1 and str(table["mopd"]["arith.held"]) == "0.500"
    assert str(cell) == "0.700 ± 0.141"


def test_arm_curve_starts_at_parent_score(stats):
    records = synthetic_run(teacher_a=0.8, mopd_a=[0.3, 0.6, 0.9], grpo_a=[0.2, 0.2, 0.3])
    assert stats.arm_curve(records, "mopd", "rl_json", "arith.held") == [(0, 0.1), (2, 0.3), (4, 0.6), (6, 0.9)]


@pytest.mark.parametrize(("curve", "target", "expected"), [
    ([(0, 0.1), (2, 0.5), (4, 0.76)], 0.76, 4),   # equal to the target counts
    ([(0, 0.1), (2, 0.5), (4, 0.7)], 0.76, None),  # never
    ([(0, 0.9), (2, 0.5)], 0.76, 0),               # the start already is
    ([(0, 0.1), (2, 0.8), (4, 0.2)], 0.76, 2),     # the first crossing, even if it drops again
])
def test_steps_to_reach(stats, curve, target, expected):
    assert stats.steps_to_reach(curve, target) == expected


def test_teacher_score_is_best_candidate_and_errors_without_one(stats):
    scores = {"format": {"a.held": 0.5}, "rl_arith": {"a.held": 0.7}}
    assert stats.teacher_score(scores, ["format", "rl_arith"], "a.held") == 0.7
    with pytest.raises(stats.StudyError, match="teacher candidates"):
        stats.teacher_score(scores, ["other"], "a.held")


def test_curve_mean_is_trapezoid_area_over_span(stats):
    assert stats.curve_mean([(0, 0.0), (2, 1.0), (4, 1.0)]) == pytest.approx((1.0 + 2.0) / 4)
    with pytest.raises(ValueError):
        stats.curve_mean([(0, 0.5)])


def test_paired_difference_t_and_bootstrap(stats):
    p = stats.paired_difference([0.5, 0.7, 0.6], [0.4, 0.4, 0.5])
    assert p.diffs == pytest.approx([0.1, 0.3, 0.1]) and p.mean == pytest.approx(0.5 / 3)
    sd = math.sqrt(sum((d - 0.5 / 3) ** 2 for d in (0.1, 0.3, 0.1)) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t_{0.975, 2}, as printed in any t table
    assert p.t_interval == pytest.approx((0.5 / 3 - half, 0.5 / 3 + half))
    lo, hi = p.bootstrap
    assert 0.1 - 1e-9 <= lo <= p.mean <= hi <= 0.3 + 1e-9
    one = stats.paired_difference([0.5], [0.4])
    assert one.t_interval is None and one.bootstrap is None
    with pytest.raises(ValueError):
        stats.paired_difference([0.5], [0.4, 0.3])


def test_verdict_sentences(stats):
    clear = stats.paired_difference([0.9, 0.8, 0.85], [0.2, 0.25, 0.3])
    assert "MOPD did better" in stats.verdict(clear, what="x") and "excludes 0" in stats.verdict(clear, what="x")
    unclear = stats.paired_difference([0.5, 0.2, 0.6], [0.4, 0.5, 0.3])
    assert stats.verdict(unclear, what="x").startswith("No clear difference") and "includes 0" in stats.verdict(unclear, what="x")
    tied = stats.verdict(stats.paired_difference([0.7, 0.75, 0.8], [0.72, 0.73, 0.8]), what="x")
    assert "did better" not in tied, "an interval around 0 must not name a winner"
    fewer_steps = stats.paired_difference([2.0, 4.0, 2.0], [10.0, 12.0, 14.0])
    text = stats.verdict(fewer_steps, what="steps", higher_is_better=False)
    assert text.startswith("MOPD did better") and "excludes 0" in text
    assert "one seed" in stats.verdict(stats.paired_difference([1.0], [0.0]), what="x")


def test_analyse_run_steps_and_not_reached(stats):
    records = synthetic_run(teacher_a=0.8, mopd_a=[0.5, 0.77, 0.8], grpo_a=[0.2, 0.3, 0.4])
    r = stats.analyse_run(records, arms=("mopd", "grpo_mix"), parent="rl_json", key_a="arith.held",
                          candidates=["format", "rl_arith"])
    assert r.teacher == 0.8 and r.target == pytest.approx(0.76)
    assert r.steps == {"mopd": 4, "grpo_mix": None} and r.budget == {"mopd": 6, "grpo_mix": 6}
    assert stats.steps_cell(r.steps["grpo_mix"], r.budget["grpo_mix"]) == "not reached (> 6)"
    assert r.area["mopd"] > r.area["grpo_mix"]
    with pytest.raises(stats.StudyError, match="no eval points"):
        stats.analyse_run(records, arms=("mopd", "absent"), parent="rl_json", key_a="arith.held",
                          candidates=["rl_arith"])


@pytest.mark.parametrize(("text", "seed", "expected"), [
    ('cascade "x" {\n  seed = 0\n  base = m\n}', 3, 'cascade "x" {\n  seed = 3\n  base = m\n}'),
    ("  seed = 12  # the run seed\n", 1, "  seed = 1  # the run seed\n"),
])
def test_with_seed_rewrites_the_seed_line(study, text, seed, expected):
    assert study.with_seed(text, seed) == expected


def test_with_seed_needs_exactly_one_line(study):
    with pytest.raises(study.StudyError, match="found 0"):
        study.with_seed('cascade "x" { }', 1)
    with pytest.raises(study.StudyError, match="found 2"):
        study.with_seed("seed = 1\nseed = 2\n", 1)


def test_study_specs_keep_one_seed_line(study):
    for spec in sorted((ROOT / "examples" / "study").glob("*.cascade")):
        assert "seed = 5" in study.with_seed(spec.read_text(), 5), spec


def _write_run(path: Path, plan_json: str, records: list[dict]) -> Path:
    path.mkdir(parents=True)
    (path / "plan.json").write_text(plan_json)
    (path / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"torn')
    return path


def test_report_from_synthetic_runs(study, tmp_path):
    result = compile_file(CPU_SPEC)
    assert result.ok, result.diagnostics
    plan_json = result.plan.to_json()
    runs = [_write_run(tmp_path / f"seed{i}", plan_json, synthetic_run(teacher_a=0.8, mopd_a=m, grpo_a=g))
            for i, (m, g) in enumerate([([0.5, 0.8, 0.8], [0.2, 0.3, 0.4]), ([0.6, 0.7, 0.79], [0.3, 0.5, 0.5]),
                                         ([0.4, 0.78, 0.8], [0.2, 0.3, 0.77])])]
    out = tmp_path / "res" / "study.md"
    assert study.main(["--from-runs", *map(str, runs), "--out", str(out), "--note", "synthetic"]) == 0
    text = out.read_text()
    assert (tmp_path / "res" / "study-curves.png").stat().st_size > 1000
    assert "![curves](study-curves.png)" in text and "synthetic" in text
    assert "| rl_arith | 0.800 ± 0.000 |" in text
    assert "not reached (> 6)" in text and "reached in 3/3 seeds; 4.667 ± 1.155 steps" in text
    assert "reached in 1/3 seeds; 6.000 steps" in text
    assert "MOPD got there sooner in 3 of 3 seeds, later in 0" in text
    assert "2 arm-seed(s) never got there" in text
    # Censored steps (not reached = 8) give MOPD − GRPO = -2.667 with a t interval that still includes 0.
    assert "No clear difference on steps to bring `arith.held` back to 95% of its teacher: MOPD − GRPO = -2.667" in text
    assert "MOPD did better on the mean `arith.held` over the arm's steps" in text and "excludes 0" in text
    assert "| `" + str(runs[0]) + "` | 0.800 | 0.400 | 0.800 | 0.800 |" in text  # final A and B of both arms
    for i in range(3):
        assert f"![cascade seed{i}](study-seed{i}-cascade.png)" in text
        assert (tmp_path / "res" / f"study-seed{i}-cascade.png").stat().st_size > 1000


def test_report_errors_are_messages_not_tracebacks(study, tmp_path, capsys):
    assert study.main(["--from-runs", str(tmp_path / "nope")]) == 2
    assert "has no plan.json" in capsys.readouterr().err
    result = compile_file(CPU_SPEC)
    run = _write_run(tmp_path / "r", result.plan.to_json(), synthetic_run(teacher_a=0.8, mopd_a=[0.5], grpo_a=[0.2]))
    assert study.main(["--from-runs", str(run), "--out", str(tmp_path / "o.md"), "--mopd", "nope"]) == 2
    assert "has no stage `nope`" in capsys.readouterr().err


def test_compile_seed_builds_a_seeded_plan_and_removes_its_copy(study, tmp_path):
    spec = tmp_path / "s.cascade"
    spec.write_text(CPU_SPEC.read_text())
    target, run_dir = study.compile_seed(spec, 4, tmp_path / "runs")
    assert run_dir == tmp_path / "runs" / "seed4"
    assert json.loads((Path(target) / "plan.json").read_text())["seed"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "s.cascade"]
    spec.write_text(CPU_SPEC.read_text().replace("steps = 8", "steps = 0"))
    with pytest.raises(study.StudyError, match="compile` failed for seed 1"):
        study.compile_seed(spec, 1, tmp_path / "runs")


def test_binomial_se_and_regression_noise(stats):
    assert stats.binomial_se(0.5, 100) == pytest.approx(0.05)
    assert stats.binomial_se(1.0, 32) == 0.0
    with pytest.raises(ValueError):
        stats.binomial_se(0.5, 0)
    # 0.8 -> 0.1 on 32 items is far beyond noise; 0.34 -> 0.28 (two items of 32) is not.
    assert stats.regression_is_real(0.8, 0.1, 32)
    assert not stats.regression_is_real(0.34375, 0.28125, 32)
    assert not stats.regression_is_real(0.5, 0.6, 1000)  # a gain is never a regression


def test_report_flags_runs_without_a_regression(study, stats, tmp_path):
    records = [r if not (r["stage"] == "rl_json" and r["domain"] == "arith") else {**r, "score": 0.78}
               for r in synthetic_run(teacher_a=0.8, mopd_a=[0.8], grpo_a=[0.7])]
    run = _write_run(tmp_path / "seed0", compile_file(CPU_SPEC).plan.to_json(), records)
    r = stats.analyse_run(records, arms=("mopd", "grpo_mix"), parent="rl_json", key_a="arith.held",
                          candidates=["format", "rl_arith"])
    assert (r.start, r.items) == (0.78, 32)
    out = tmp_path / "o.md"
    assert study.main(["--from-runs", str(run), "--out", str(out)]) == 0
    text = out.read_text()
    assert "+0.020 (noise)" in text and "in 0 of 1 seeds; a drop marked (noise) did not" in text and "Caveat: stage B hurt domain A beyond eval noise in only 0 of 1" in text
    assert "`arith.held` 32 items (one item = 0.031)" in text


def test_censored_steps_count_not_reached_as_the_next_eval_point(stats):
    records = synthetic_run(teacher_a=0.8, mopd_a=[0.5, 0.77, 0.8], grpo_a=[0.2, 0.3, 0.4])
    r = stats.analyse_run(records, arms=("mopd", "grpo_mix"), parent="rl_json", key_a="arith.held",
                          candidates=["format", "rl_arith"])
    assert r.every == {"mopd": 2, "grpo_mix": 2}
    assert (r.censored_steps("mopd"), r.censored_steps("grpo_mix")) == (4, 8)


def test_report_leaves_out_unfinished_seeds_and_shows_stage_b_reward(study, tmp_path):
    plan_json = compile_file(CPU_SPEC).plan.to_json()
    runs = []
    for i, grpo_a in enumerate([[0.2, 0.3, 0.4], [0.3, 0.5, 0.77], [0.2]]):
        run = _write_run(tmp_path / f"seed{i}", plan_json, synthetic_run(teacher_a=0.8, mopd_a=[0.5, 0.8, 0.8],
                                                                          grpo_a=grpo_a))
        done = ["format", "rl_arith", "warm_json", "rl_json", "mopd"] + (["grpo_mix"] if i < 2 else [])
        (run / "state.json").write_text(json.dumps({"stages": {s: {"status": "done"} for s in done}}))
        (run / "stages" / "rl_json").mkdir(parents=True)
        (run / "stages" / "rl_json" / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": k, "reward_mean": 0.25 + 0.25 * k}) + "\n" for k in range(3)))
        runs.append(run)
    out = tmp_path / "o.md"
    assert study.main(["--from-runs", *map(str, runs), "--out", str(out)]) == 0
    text = out.read_text()
    assert f"**Not finished** (left out below the stage table): `{runs[2]}` (done: format, mopd, rl_arith" in text
    assert f"| `{runs[0]}` | 0.250 → 0.750 | 0.800 | 0.100 | +0.700 | 0.760 | 4 | not reached (> 6) |" in text
    assert f"| `{runs[2]}` | 0.250" not in text and "MOPD got there sooner in 2 of 2 seeds" in text
    (runs[1] / "state.json").write_text(json.dumps({"stages": {}}))
    (runs[0] / "state.json").write_text(json.dumps({"stages": {}}))
    assert study.main(["--from-runs", *map(str, runs), "--out", str(out)]) == 2
