"""Lowering: order, weights, branches, hashes, paths, units, schedules, defaults precedence."""

from __future__ import annotations

import os

from cascadec.compiler import compile_source
from cascadec.lower import display_path
from cascadec.contract.plan import Plan


def _plan(text: str, path: str = "/spec/dir/x.cascade") -> Plan:
    result = compile_source(text, path)
    assert result.plan is not None, result.diagnostics
    return result.plan


def test_stages_are_topologically_ordered_and_weights_normalised(small: str) -> None:
    text = small.replace("stage sft = sft(base)", "stage late = grpo(opd) on math { steps = 1  prompts_per_step = 2  rollouts_per_prompt = 2  lr = 1e-6 }\n  stage sft = sft(base)")
    plan = _plan(text)
    names = [s.name for s in plan.stages]
    assert names == ["sft", "side", "rl", "opd", "late"]
    assert plan.stage("rl").domains == {"math": 2 / 3, "code": 1 / 3}
    assert plan.stage("opd").domains == {"math": 0.5, "code": 0.5}  # no `on`: every domain, equal weights
    assert abs(sum(plan.stage("sft").domains.values()) - 1) < 1e-12


def test_branch_flags_only_side_branches(small: str) -> None:
    plan = _plan(small)
    assert {s.name: s.branch for s in plan.stages} == {"sft": False, "side": True, "rl": False, "opd": False}


def test_hash_covers_ancestors_and_teachers_but_not_unrelated_stages(small: str) -> None:
    before = {s.name: s.hash for s in _plan(small).stages}
    edited = {s.name: s.hash for s in _plan(small.replace("stage side = grpo(sft) on code { steps = 2", "stage side = grpo(sft) on code { steps = 3")).stages}
    assert edited["sft"] == before["sft"] and edited["rl"] == before["rl"]
    assert edited["side"] != before["side"]
    assert edited["opd"] != before["opd"]  # `side` is a teacher of `opd`
    shifted = {s.name: s.hash for s in _plan("# a comment shifts every origin\n" + small).stages}
    assert shifted == before  # origins are not hashed


def test_data_paths_resolve_against_the_spec_directory(small: str) -> None:
    plan = _plan(small, "/spec/dir/x.cascade")
    assert plan.domains["code"].train.path == os.path.normpath("/spec/dir/data/code.jsonl")
    assert plan.domains["math"].train.path is None and plan.domains["math"].train.name == "basic_arithmetic"


def test_units_and_reward_arguments(small: str) -> None:
    text = small.replace("reward = unit_tests(tests = field(\"tests\"), timeout = 2s)", "reward = unit_tests(timeout = 1500ms, memory = 1GiB, tests = field(\"tests\"))")
    text = text.replace("rollouts_per_prompt = 2  lr = 1e-5 }\n  stage opd", "rollouts_per_prompt = 2  lr = 1e-5  max_response = 2k }\n  stage opd")
    plan = _plan(text)
    args = plan.domains["code"].reward.args
    assert args == {"timeout": 1.5, "memory": 1024**3, "tests": {"field": "tests"}}
    assert plan.stage("rl").params.max_response == 2000  # type: ignore[union-attr]


def test_schedule_layers_defaults_then_stage(small: str) -> None:
    text = small.replace('  domain math', '  defaults grpo { lr = 3e-6 -> 3e-7 cosine warmup 5 from 1e-7  betas = (0.9, 0.95) }\n  domain math')
    text = text.replace("stage side = grpo(sft) on code { steps = 2  prompts_per_step = 2  rollouts_per_prompt = 2  lr = 1e-5 }",
                        "stage side = grpo(sft) on code { steps = 2  prompts_per_step = 2  rollouts_per_prompt = 2  warmup = 1 }")
    plan = _plan(text)
    side = plan.stage("side").params.optim
    assert (side.lr.peak, side.lr.end, side.lr.kind, side.lr.warmup, side.lr.warmup_start) == (3e-6, 3e-7, "cosine", 1, 1e-7)
    assert side.betas == (0.9, 0.95)
    rl = plan.stage("rl").params.optim.lr  # the stage's own `lr` replaces the schedule, warm-up stays
    assert (rl.peak, rl.kind, rl.warmup) == (1e-5, "constant", 5)


def test_resources_micro_batch_and_stage_override(small: str) -> None:
    text = small.replace('  domain math', '  resources { gpus = 2  micro_batch = 1  strategy = zero3  memory_per_gpu = 80GB }\n  domain math')
    text = text.replace("stage sft = sft(base) on [math, code] { steps = 2  batch_size = 2  lr = 1e-4 }",
                        "stage sft = sft(base) on [math, code] { steps = 2  batch_size = 2  lr = 1e-4  resources { gpus = 1  micro_batch = 2 } }")
    plan = _plan(text)
    sft, rl = plan.stage("sft"), plan.stage("rl")
    assert (sft.resources.nproc_per_node, sft.params.micro_batch) == (1, 2)
    assert (rl.resources.nproc_per_node, rl.params.micro_batch, rl.resources.strategy) == (2, 1, "zero3")
    assert rl.resources.memory_per_gpu_bytes == 80 * 10**9


def test_teachers_and_until_lower_to_plan_objects(small: str) -> None:
    text = small.replace("teachers { code = side  default = sft }",
                         "teachers { code = side  math = best(sft, rl by math.held)  default = sft }  eval_every = 1  "
                         "until math.held >= 0.5 * teacher(math).held or plateau(math.held, patience = 2) or steps >= 1")
    opd = _plan(text).stage("opd")
    best = opd.teachers["math"]
    assert (best.kind, best.candidates, best.domain, best.eval) == ("best", ["sft", "rl"], "math", "held")
    kinds = [(c.kind, c.value, c.relative_to, c.patience) for c in opd.until]
    assert kinds == [("threshold", 0.5, "math", 0), ("plateau", 0.0, None, 2), ("steps", 1.0, None, 0)]


def test_plan_round_trips_through_json(small: str) -> None:
    plan = _plan(small)
    assert Plan.from_json(plan.to_json()) == plan
    assert all(s.origin is not None and s.origin.path == display_path("/spec/dir/x.cascade") for s in plan.stages)
