"""A DAPO-style stage learns the trivially learnable task of test_learning_grpo; the all-uninformative case
stops (a `UserError`: the stage process exits 2) or warns as its `on_no_signal` policy says."""

import string

import pytest
import torch
from test_grpo_trainer import BATCH, make_ctx

from cascadec.contract.plan import Optim, Schedule
from runtime.dynamic_sampling import NoSignalError
from runtime.stages.grpo import GRPOTrainer

torch.set_num_threads(2)

STEPS = 30
DAPO = dict(clip=(0.2, 0.28), updates_per_step=2, loss="token_mean", dynamic_filter=True, sampling_budget=3,
            on_no_signal="partial", max_tokens_per_gpu=64, rollouts_per_prompt=8, max_response=1)


def starts_lowercase(samples, completions):
    return [1.0 if c[:1] in string.ascii_lowercase else 0.0 for c in completions]


def test_dapo_style_stage_learns_the_first_token_task(tmp_path):
    """Clip-higher with two mini-batch updates per rollout batch, dynamic sampling with a budget of three
    generation batches, token-mean loss, packed micro-batches."""
    ctx = make_ctx(tmp_path, steps=STEPS, optim=Optim(lr=Schedule(peak=1e-2)), **DAPO)
    ctx.rewards["toy"] = starts_lowercase
    ctx.resample = lambda step, attempt: BATCH
    trainer = GRPOTrainer(ctx)
    metrics = [trainer.step(step, BATCH) for step in range(STEPS)]
    history = [m["reward_mean"] for m in metrics]
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert first < 0.3, history
    assert last >= 0.8, history
    assert max(m["clip_frac"] for m in metrics) > 0  # the second update is off-policy and gets clipped
    assert max(m["sampling_attempts"] for m in metrics) > 1  # some steps had to sample again


@pytest.mark.parametrize("policy", ["error", "partial", "skip"])
def test_all_uninformative_follows_its_policy(tmp_path, capsys, policy):
    ctx = make_ctx(tmp_path, **{**DAPO, "on_no_signal": policy})
    ctx.rewards["toy"] = lambda s, c: [0.0] * len(c)  # every group all wrong: no signal anywhere
    ctx.resample = lambda step, attempt: BATCH
    trainer = GRPOTrainer(ctx)
    if policy == "error":
        with pytest.raises(NoSignalError, match="0 of 2 groups carry a learning signal after 3 generation batches"):
            trainer.step(0, BATCH)
        return
    before = [p.detach().clone() for p in ctx.policy.parameters()]
    m = trainer.step(0, BATCH)
    assert "0 of 2 groups carry a learning signal" in capsys.readouterr().out
    assert m["grad_norm"] == 0.0 and m["sampling_attempts"] == 3.0
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.policy.parameters()))
