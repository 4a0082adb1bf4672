"""GRPOTrainer.step on a real StageContext (tiny random-init model, inline data)."""

from pathlib import Path

import pytest
import torch

from cascadec.contract.plan import (
    DataSource, Domain, GRPOParams, ModelRef, Optim, Plan, Resources, RewardSpec, Schedule, Stage,
)
from runtime.data import Sample
from runtime.entry import build_context
from runtime.stages import TRAINERS
from runtime.stages.grpo import GRPOTrainer, rollout_seed
from runtime.state import RunDir

torch.set_num_threads(2)

TINY = ModelRef(kind="tiny", name="llama", config={"hidden_size": 32, "intermediate_size": 64,
                                                    "num_hidden_layers": 1, "num_attention_heads": 2,
                                                    "num_key_value_heads": 1})


def make_ctx(tmp_path: Path, *, overlong: str = "none", precision: str = "fp32", **params):
    args = {"optim": Optim(lr=Schedule(peak=1e-2)), "steps": 4, "prompts_per_step": 2,
            "rollouts_per_prompt": 4, "micro_batch": 3, "max_response": 3}
    stage = Stage(name="rl", kind="grpo", parent="base", domains={"toy": 1.0},
                  params=GRPOParams(**{**args, **params}), resources=Resources(device="cpu", precision=precision))
    dom = Domain(name="toy", train=DataSource(kind="inline", rows=[{"prompt": "x", "answer": "1"}]),
                 reward=RewardSpec(kind="exact"), overlong=overlong)
    plan = Plan(name="t", base=TINY, domains={"toy": dom}, stages=[stage])
    return build_context(plan, stage, RunDir(tmp_path / "run"))


BATCH = [Sample(id="toy/train/0", domain="toy", prompt="hello"),
         Sample(id="toy/train/1", domain="toy", prompt="world")]


def first_letter(samples, completions):
    return [1.0 if c[:1].isalpha() else 0.0 for c in completions]


def params_of(ctx):
    return [p.detach().clone() for p in ctx.policy.parameters()]


def test_registered_and_metrics_of_one_step(tmp_path):
    assert TRAINERS["grpo"] is GRPOTrainer
    ctx = make_ctx(tmp_path)
    ctx.rewards["toy"] = lambda s, c: [float(i % 2) for i in range(len(c))]  # every group has signal
    before = params_of(ctx)
    m = GRPOTrainer(ctx).step(0, BATCH)
    expected = {"loss", "reward_mean", "reward_std", "kl", "entropy", "response_len", "truncated_frac",
                "filtered_frac", "zero_std_frac", "tokens_per_s", "grad_norm", "lr", "gen_s", "reward_s", "train_s",
                "logp_mismatch",
                "reward_mean/toy"}
    assert expected <= set(m)
    assert m["reward_mean"] == 0.5 and m["zero_std_frac"] == 0.0 and m["grad_norm"] > 0
    assert m["entropy"] > 0 and m["kl"] == 0.0 and m["lr"] == pytest.approx(1e-2)
    assert m["logp_mismatch"] < 1e-4  # the engine sampled from the weights being trained
    # exactly one optimizer step and one scheduler step
    state = ctx.optimizer.state[next(iter(ctx.optimizer.param_groups[0]["params"]))]
    assert int(state["step"]) == 1 and ctx.scheduler.last_epoch == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, params_of(ctx)))


def test_dynamic_filter_drops_zero_variance_groups(tmp_path):
    ctx = make_ctx(tmp_path, dynamic_filter=True)
    ctx.rewards["toy"] = lambda s, c: [1.0] * len(c)
    before = params_of(ctx)
    m = GRPOTrainer(ctx).step(0, BATCH)
    assert m["filtered_frac"] == 1.0 and m["zero_std_frac"] == 1.0 and m["grad_norm"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, params_of(ctx)))
    assert ctx.scheduler.last_epoch == 1  # the LR schedule still advances once per rollout batch


def test_overlong_penalty_zeroes_truncated_rewards(tmp_path):
    ctx = make_ctx(tmp_path, overlong="penalty", max_response=2)
    ctx.rewards["toy"] = lambda s, c: [1.0] * len(c)
    m = GRPOTrainer(ctx).step(0, BATCH)
    # a random-init model almost never emits EOS within 2 tokens
    assert m["truncated_frac"] == 1.0 and m["reward_mean"] == 0.0


def test_overlong_filter_removes_truncated_rollouts_from_the_loss(tmp_path):
    ctx = make_ctx(tmp_path, overlong="filter", max_response=2)
    ctx.rewards["toy"] = first_letter
    m = GRPOTrainer(ctx).step(0, BATCH)
    assert m["truncated_frac"] == 1.0 and m["filtered_frac"] == 1.0 and m["grad_norm"] == 0.0


def test_kl_to_the_parent_is_zero_before_the_first_update(tmp_path):
    ctx = make_ctx(tmp_path, kl=0.5)
    ctx.rewards["toy"] = lambda s, c: [float(i % 2) for i in range(len(c))]
    trainer = GRPOTrainer(ctx)
    assert trainer.reference is not None
    first = trainer.step(0, BATCH)
    second = trainer.step(1, BATCH)
    assert first["kl"] == pytest.approx(0.0, abs=1e-6) and second["kl"] > 1e-6


def test_rollouts_are_fixed_by_seed_and_step(tmp_path):
    ctx = make_ctx(tmp_path)
    prompts = [ctx.render_prompt(s) for s in BATCH]
    seed = rollout_seed(ctx.stage.seed, 3, 0)
    kw = {"n": 4, "max_new_tokens": 3, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
    assert ctx.engine.generate(prompts, seed=seed, **kw).completion_ids == \
        ctx.engine.generate(prompts, seed=seed, **kw).completion_ids
    assert rollout_seed(0, 3, 0) != rollout_seed(0, 4, 0) != rollout_seed(0, 3, 1)


def _routed(meta_a: dict, meta_b: dict):
    from runtime.routing import RoutedReward

    batch = [Sample(id="toy/train/0", domain="toy", prompt="hello", meta=meta_a),
             Sample(id="toy/train/1", domain="toy", prompt="world", meta=meta_b)]
    return batch, RoutedReward("data_source", {"a": lambda s, c: [float(i % 2) for i in range(len(c))]})


def test_unrouted_rows_are_left_out_of_the_loss_counted_and_warned(tmp_path):
    ctx = make_ctx(tmp_path)
    batch, ctx.rewards["toy"] = _routed({"data_source": "a"}, {"data_source": "hub-only"})
    with pytest.warns(RuntimeWarning, match="'hub-only', which has no route"):
        m = GRPOTrainer(ctx).step(0, batch)
    assert m["reward/toy/unrouted"] == 4.0 and m["reward/toy/route/a"] == 4.0  # 4 rollouts per prompt
    assert m["filtered_frac"] == 0.5 and m["grad_norm"] > 0


def test_only_unrouted_rows_train_nothing_even_with_an_entropy_bonus(tmp_path):
    # with an entropy bonus a kept row moves the weights even at advantage 0; an unrouted row must not
    ctx = make_ctx(tmp_path, entropy=0.1)
    batch, ctx.rewards["toy"] = _routed({}, {"data_source": "b"})
    before = params_of(ctx)
    with pytest.warns(RuntimeWarning):
        m = GRPOTrainer(ctx).step(0, batch)
    assert m["reward/toy/unrouted"] == 8.0 and m["filtered_frac"] == 1.0 and m["grad_norm"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, params_of(ctx)))
