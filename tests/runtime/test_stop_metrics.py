"""`until train.<metric> ...` clauses (runtime.stop) on the last step's training metrics."""

import pytest

from cascadec.contract.plan import Condition
from runtime.stop import StopRuleError, should_stop

CLIP = Condition(kind="metric", metric="truncated_frac", op=">=", value=0.1)
LONG = Condition(kind="metric", metric="response_len", op=">", value=12_000)


def test_a_metric_clause_fires_on_the_last_step_line():
    assert should_stop([CLIP], [], 3, metrics={"step": 2, "truncated_frac": 0.05}) is None
    reason = should_stop([CLIP], [], 4, metrics={"step": 3, "truncated_frac": 0.125})
    assert reason == "train.truncated_frac = 0.125 >= 0.1 at step 3"
    assert should_stop([LONG], [], 4, metrics={"step": 3, "response_len": 12_001.0}).startswith("train.response_len")


def test_no_metrics_yet_means_go_on():
    assert should_stop([CLIP], [], 0, metrics=None) is None


def test_an_unlogged_metric_is_a_user_error_with_the_known_names():
    with pytest.raises(StopRuleError, match=r"(?s)logs no `truncated_frac` metric.*help: use one of loss, step"):
        should_stop([CLIP], [], 1, metrics={"step": 0, "loss": 1.0, "reward_mean/x": 0.5})


def test_epochs_resolve_the_steps_from_the_data_size():
    from cascadec.contract.params import GRPOParams, Optim, Schedule
    from cascadec.contract.plan import Stage
    from runtime.entry import with_total_steps

    def stage(**kw):
        return Stage(name="rl", kind="grpo", parent="base", domains={"d": 1.0},
                     params=GRPOParams(optim=Optim(lr=Schedule(peak=1e-6)), prompts_per_step=8, **kw))

    assert with_total_steps(stage(epochs=2), 100).params.steps == 25  # ceil(2 * 100 / 8)
    assert with_total_steps(stage(epochs=2, steps=10), 100).params.steps == 10  # steps caps
    assert with_total_steps(stage(steps=7), 100).params.steps == 7
    assert with_total_steps(stage(epochs=0.001), 1).params.steps == 1  # a started epoch is a step
    assert stage(epochs=1.5).params.steps_label() == "1.5 ep"
