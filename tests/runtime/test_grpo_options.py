"""GRPOTrainer with the PPO-style options on a real StageContext (tiny random-init model, inline data)."""

import pytest
import torch
from test_grpo_trainer import BATCH, make_ctx, params_of

from runtime.dynamic_sampling import NoSignalError
from runtime.stages.grpo import GRPOTrainer

torch.set_num_threads(2)


def alternating(samples, completions):
    return [float(i % 2) for i in range(len(completions))]


def test_several_updates_per_step_step_the_optimizer_each_time_and_the_schedule_once(tmp_path):
    ctx = make_ctx(tmp_path, updates_per_step=2, clip=(0.2, 0.28), micro_batch=2)
    ctx.rewards["toy"] = alternating
    m = GRPOTrainer(ctx).step(0, BATCH)
    state = ctx.optimizer.state[next(iter(ctx.optimizer.param_groups[0]["params"]))]
    assert int(state["step"]) == 2 and ctx.scheduler.last_epoch == 1
    assert m["grad_norm"] > 0 and 0.0 <= m["clip_frac"] <= 1.0


def test_packed_update_gives_the_padded_loss(tmp_path):
    losses = []
    for kw in ({"micro_batch": 3}, {"max_tokens_per_gpu": 16}):
        ctx = make_ctx(tmp_path / str(len(losses)), **kw)
        ctx.rewards["toy"] = alternating
        losses.append(GRPOTrainer(ctx).step(0, BATCH)["loss"])
    assert losses[1] == pytest.approx(losses[0], abs=1e-5)


def test_is_correction_reports_masked_tokens_and_trains(tmp_path):
    ctx = make_ctx(tmp_path, is_correction="icepop", is_band=(0.5, 2.0))
    ctx.rewards["toy"] = alternating
    m = GRPOTrainer(ctx).step(0, BATCH)
    # the engine sampled from the trained weights: every ratio is 1, inside the band
    assert m["is_masked_frac"] == 0.0 and m["grad_norm"] > 0


def test_kl_in_the_reward_runs_a_scoring_pass(tmp_path):
    ctx = make_ctx(tmp_path, kl=0.1, kl_in="reward", kl_estimator="k2")
    ctx.rewards["toy"] = alternating
    trainer = GRPOTrainer(ctx)
    m = trainer.step(0, BATCH)
    assert m["kl"] == 0.0  # no KL in the loss: it went into the advantages (0 before the first update)
    assert m["grad_norm"] > 0


@pytest.mark.parametrize("estimator", ["dr_grpo", "rloo", "reinforce_pp_baseline"])
def test_each_advantage_estimator_trains(tmp_path, estimator):
    ctx = make_ctx(tmp_path, advantage=estimator, loss="seq_mean_token_sum")
    ctx.rewards["toy"] = alternating
    before = params_of(ctx)
    assert GRPOTrainer(ctx).step(0, BATCH)["grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, params_of(ctx)))


def _by_prompt(samples, completions):
    # informative only for prompts that start with "w": the other groups have equal rewards
    return [float(s.prompt.startswith("w") and i % 2) for i, s in enumerate(samples)]


def test_dynamic_sampling_draws_more_prompts_until_the_batch_is_full(tmp_path):
    ctx = make_ctx(tmp_path, dynamic_filter=True, sampling_budget=3)
    ctx.rewards["toy"] = _by_prompt
    calls = []

    def resample(step, attempt):
        calls.append((step, attempt))
        return [BATCH[1]]

    ctx.resample = resample
    m = GRPOTrainer(ctx).step(0, BATCH)
    # the first batch had 1 informative group of 2; one more generation batch filled it
    assert calls == [(0, 1)] and m["sampling_attempts"] == 2.0 and m["grad_norm"] > 0


def test_dynamic_sampling_error_policy_stops_the_stage(tmp_path):
    ctx = make_ctx(tmp_path, dynamic_filter=True, sampling_budget=2, on_no_signal="error")
    ctx.rewards["toy"] = lambda s, c: [1.0] * len(c)
    ctx.resample = lambda step, attempt: BATCH
    with pytest.raises(NoSignalError, match="0 of 2 groups carry a learning signal after 2 generation batches"):
        GRPOTrainer(ctx).step(0, BATCH)


def test_no_signal_streak_warns_and_is_checkpointed(tmp_path, capsys):
    ctx = make_ctx(tmp_path, no_signal_patience=2)
    ctx.rewards["toy"] = lambda s, c: [0.0] * len(c)
    trainer = GRPOTrainer(ctx)
    trainer.step(0, BATCH)
    assert trainer.state_dict() == {"no_signal_streak": 1}
    trainer.step(1, BATCH)
    assert "no group with a learning signal for 2 steps in a row" in capsys.readouterr().out
    trainer.load_state_dict({"no_signal_streak": 7})
    assert trainer.watch.streak == 7
