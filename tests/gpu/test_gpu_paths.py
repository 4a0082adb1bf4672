"""GPU code paths in bf16: chunked log-probs, one GRPO step and one MOPD step through the real trainers.

All tests are marked ``gpu`` and skip without CUDA; bench/results/gpu-tests.md records a run on an H200.
"""

from __future__ import annotations

import pytest
import torch

from cascadec.contract.plan import (
    DataSource,
    DistillParams,
    Domain,
    GRPOParams,
    ModelRef,
    Optim,
    Plan,
    Resources,
    RewardSpec,
    Schedule,
    Stage,
    TeacherRef,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

TINY = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 512}
PROMPTS = [f"add {a} and {b}" for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]]


def _plan(kind: str, tmp_path, loss: str = "mopd") -> Plan:
    domain = Domain(name="toy", train=DataSource(kind="inline", rows=[{"prompt": p, "answer": "3"} for p in PROMPTS]),
                    reward=RewardSpec(kind="py", args={"fn": "bench.gpu_common:length_reward"}))
    optim = Optim(lr=Schedule(peak=1e-3))
    resources = Resources(device="cuda", precision="bf16")
    if kind == "grpo":
        params = GRPOParams(optim=optim, steps=2, prompts_per_step=4, rollouts_per_prompt=4, micro_batch=8,
                            max_response=16)
        stage = Stage(name="rl", kind="grpo", parent="base", domains={"toy": 1.0}, params=params, resources=resources)
    else:
        params = DistillParams(optim=optim, steps=2, prompts_per_step=4, rollouts_per_prompt=2, micro_batch=4,
                               max_response=16, loss=loss)
        stage = Stage(name="mopd", kind="distill", parent="base", domains={"toy": 1.0}, params=params,
                      teachers={"default": TeacherRef(kind="stage", stage="base")}, resources=resources)
    return Plan(name=f"gpu-{kind}", base=ModelRef(kind="tiny", name="llama", config=TINY), domains={"toy": domain},
                stages=[stage])


def _context(plan: Plan, tmp_path, fast: bool):
    from runtime.entry import build_context
    from runtime.rollout.fast import FastRolloutEngine
    from runtime.state import RunDir

    ctx = build_context(plan, plan.stages[0], RunDir(tmp_path))
    if fast:
        ctx.engine = FastRolloutEngine(ctx.policy, ctx.tokenizer, dtype=ctx.dtype)
    return ctx


def test_chunked_logprobs_match_naive_in_bf16():
    from transformers import LlamaConfig, LlamaForCausalLM

    from runtime.logprobs import token_logprobs

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=4096, **TINY)).cuda().to(torch.bfloat16)
    ids = torch.randint(0, 4096, (4, 96), device="cuda")
    attn = torch.ones_like(ids)
    attn[0, :10] = 0  # a left-padded row
    comp = torch.zeros_like(ids)
    comp[:, 40:] = 1
    out = token_logprobs(model, ids, attn, comp, chunk=16)
    logits = model(input_ids=ids, attention_mask=attn).logits.float()
    naive = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    mask = comp[:, 1:].bool()
    err = (out.logprobs[:, 1:] - naive)[mask].abs().max().item()
    assert err < 2e-2, f"chunked vs naive log-prob error {err}"
    (out.logprobs.sum()).backward()
    chunked_grad = model.model.embed_tokens.weight.grad.clone()
    model.zero_grad()
    (naive * mask).sum().backward()
    rel = (chunked_grad - model.model.embed_tokens.weight.grad).float().norm() / chunked_grad.float().norm()
    assert rel < 5e-2, f"gradient mismatch {rel}"


@pytest.mark.parametrize("fast", [True, False], ids=["fast-engine", "hf-engine"])
def test_grpo_step_bf16_updates_the_policy(tmp_path, fast):
    from runtime.data import load_domains
    from runtime.stages.grpo import GRPOTrainer

    plan = _plan("grpo", tmp_path)
    ctx = _context(plan, tmp_path, fast)
    batch = load_domains([("toy", plan.domains["toy"].train)])["toy"]
    before = [p.detach().clone() for p in ctx.unwrapped_policy().parameters()]
    metrics = GRPOTrainer(ctx).step(0, batch)
    assert torch.isfinite(torch.tensor(metrics["loss"])) and metrics["grad_norm"] > 0
    changed = sum(not torch.equal(a, b.detach()) for a, b in zip(before, ctx.unwrapped_policy().parameters()))
    assert changed > 0, "the optimizer step changed no parameter"
    assert ctx.dtype == torch.bfloat16


def _train_against_the_start(monkeypatch) -> None:
    """Let the stage train with its start as its teacher (a run keeps such a stage's start without a step:
    `runtime.teachers.nothing_to_distil`), so that the divergence is 0 up to bf16 rounding."""
    monkeypatch.setattr("runtime.stages.distill.nothing_to_distil", lambda *args: None)


def test_mopd_step_bf16_with_fast_engine(tmp_path, monkeypatch):
    from runtime.data import load_domains
    from runtime.stages.distill import DistillTrainer

    _train_against_the_start(monkeypatch)
    plan = _plan("distill", tmp_path)
    ctx = _context(plan, tmp_path, fast=True)
    batch = load_domains([("toy", plan.domains["toy"].train)])["toy"]
    trainer = DistillTrainer(ctx)
    first = trainer.step(0, batch)
    second = trainer.step(1, batch)
    for metrics in (first, second):
        assert all(torch.isfinite(torch.tensor(metrics[k])) for k in ("loss", "reverse_kl", "is_ratio"))
    # The first step samples from the teacher's own weights, and the fast engine's bf16 log-probs must
    # agree with the trainer's: the importance ratio is 1 up to bf16 rounding.
    assert abs(first["is_ratio"] - 1.0) < 0.05, first["is_ratio"]
    assert first["response_len"] > 0 and second["response_len"] > 0


@pytest.mark.parametrize("loss", ["reverse_kl", "jsd"])
def test_logit_distill_step_bf16_with_fast_engine(tmp_path, monkeypatch, loss):
    from runtime.data import load_domains
    from runtime.stages.distill import DistillTrainer

    _train_against_the_start(monkeypatch)
    plan = _plan("distill", tmp_path, loss=loss)
    ctx = _context(plan, tmp_path, fast=True)
    batch = load_domains([("toy", plan.domains["toy"].train)])["toy"]
    metrics = DistillTrainer(ctx).step(0, batch)
    assert all(torch.isfinite(torch.tensor(metrics[k])) for k in ("loss", "reverse_kl", "entropy", "grad_norm"))
    # The teacher is the student's own starting point: the divergence is 0 up to bf16 rounding.
    assert abs(metrics["loss"]) < 0.05 and abs(metrics["reverse_kl"]) < 0.05, metrics
