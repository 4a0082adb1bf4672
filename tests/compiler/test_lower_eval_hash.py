"""Training hash vs eval hash: an eval-only edit changes every stage's ``eval_hash`` and no ``hash``, except
where an eval decides when a stage stops (an ``until`` rule); a ``best(... by d.e)`` teacher's eval is hashed
apart (``choice_hash``)."""

from __future__ import annotations

from compiler_helpers import SMALL

from cascadec.compiler import compile_source
from cascadec.contract.hashing import choice_hash

# `code` gets an eval, `pick` chooses its teacher by `code.unit`, `stop` stops by `math.held`; no stage
# trains on `extra`, which only has an eval.
SPEC = SMALL.replace(
    "  stage sft = sft(base)",
    '  domain extra { train = jsonl("data/extra.jsonl")  reward = exact(answer = field("answer"))\n'
    '    eval held = jsonl("data/extra_eval.jsonl") }\n  stage sft = sft(base)',
).replace("stage opd = distill(rl) {", "stage opd = distill(rl) on [math, code] {").replace(
    'reward = unit_tests(tests = field("tests"), timeout = 2s) }',
    'reward = unit_tests(tests = field("tests"), timeout = 2s)\n'
    '    eval unit = jsonl("data/code_eval.jsonl") { metric = pass@1  max_tokens = 64 } }',
).replace(
    "\n}\n",
    "\n  stage pick = distill(rl) on [math, code] { steps = 2  prompts_per_step = 2  lr = 1e-6"
    "  teachers { default = best(sft, side by code.unit) } }"
    "\n  stage stop = grpo(rl) on code { steps = 4  prompts_per_step = 2  rollouts_per_prompt = 2  lr = 1e-5"
    "  eval_every = 2  until math.held >= 0.9 }\n}\n",
)


def _hashes(text: str) -> tuple[dict[str, str], dict[str, str]]:
    result = compile_source(text, "/spec/dir/x.cascade")
    assert result.plan is not None, result.diagnostics
    return {s.name: s.hash for s in result.plan.stages}, {s.name: s.eval_hash for s in result.plan.stages}


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


ALL = {"sft", "side", "rl", "opd", "pick", "stop"}


def test_spec_compiles_with_both_hashes() -> None:
    train, evals = _hashes(SPEC)
    assert set(train) == ALL and all(len(h) == 64 for h in [*train.values(), *evals.values()])
    assert all(train[n] != evals[n] for n in ALL)


def test_eval_setting_changes_only_eval_hashes_of_stages_that_read_no_eval() -> None:
    train, evals = _hashes(SPEC)
    # `code.unit` decides `pick`'s teacher: that is re-checked at run time (runtime.choices), not hashed
    train2, evals2 = _hashes(SPEC.replace("max_tokens = 64", "max_tokens = 128"))
    assert _changed(train, train2) == set()
    assert _changed(evals, evals2) == ALL
    # `math.held` is read by `stop`'s until rule, and math is trained on by sft/rl: training hashes of those
    # do not cover its evals, only `stop`'s does
    train3, evals3 = _hashes(SPEC.replace("max_tokens = 8", "max_tokens = 16"))
    assert _changed(train, train3) == {"stop"}
    assert _changed(evals, evals3) == ALL


def test_eval_data_and_metric_are_eval_settings() -> None:
    train, evals = _hashes(SPEC)
    more_items = SPEC.replace('"basic_arithmetic", size = 16, seed = 2', '"basic_arithmetic", size = 32, seed = 2')
    sampled = SPEC.replace("{ metric = pass@1  max_tokens = 8 }", "{ metric = avg@4  max_tokens = 8 }")
    for edited in (more_items, sampled):
        train2, evals2 = _hashes(edited)
        assert _changed(train, train2) == {"stop"}
        assert _changed(evals, evals2) == ALL


def test_reward_of_an_untrained_domain_is_an_eval_input_only() -> None:
    train, evals = _hashes(SPEC)
    # every stage scores `extra.held` after it finishes, but none trains on `extra` or reads that eval
    train2, evals2 = _hashes(SPEC.replace('reward = exact(answer = field("answer"))', "reward = math_verify()"))
    assert _changed(train, train2) == set()
    assert _changed(evals, evals2) == ALL
    # math's reward is a training input of the stages that train on math (and so of their descendants)
    train3, _ = _hashes(SPEC.replace("reward = gym()", "reward = math_verify()"))
    assert _changed(train, train3) == ALL


def test_training_setting_changes_that_stage_and_its_descendants() -> None:
    train, evals = _hashes(SPEC)
    edited = SPEC.replace("stage rl = grpo(sft) on [math: 2, code: 1] { steps = 2",
                          "stage rl = grpo(sft) on [math: 2, code: 1] { steps = 3")
    train2, evals2 = _hashes(edited)
    assert _changed(train, train2) == {"rl", "opd", "pick", "stop"}
    assert _changed(evals, evals2) == {"rl", "opd", "pick", "stop"}
    # a teacher's training hash flows into its student's
    train3, _ = _hashes(SPEC.replace("stage side = grpo(sft) on code { steps = 2",
                                     "stage side = grpo(sft) on code { steps = 3"))
    assert _changed(train, train3) == {"side", "opd", "pick"}


def test_choice_hash_covers_the_evals_of_best_teachers_only() -> None:
    def choices(text: str) -> dict[str, str]:
        plan = compile_source(text, "/spec/dir/x.cascade").plan
        return {s.name: choice_hash(plan, s) for s in plan.stages}

    before = choices(SPEC)
    assert {n for n, h in before.items() if h} == {"pick"}
    assert choices(SPEC.replace("max_tokens = 64", "max_tokens = 128"))["pick"] != before["pick"]
    assert choices(SPEC.replace("max_tokens = 8", "max_tokens = 16")) == before  # math.held picks nothing
