"""runtime.bf16_weights: a CPU stage trains fp32 master weights through a bf16 copy (issue 16)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from runtime import precision
from runtime.bf16_weights import Bf16Weights
from runtime.logprobs import token_logprobs
from runtime.replica import paired_parameters, replica

IDS = torch.tensor([[5, 9, 17, 33, 2, 41], [7, 7, 19, 3, 11, 60]])
COMPLETION = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]], dtype=torch.bool)


def tiny_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    return LlamaForCausalLM(config).train()


def loss(model: torch.nn.Module, ids: torch.Tensor = IDS) -> torch.Tensor:
    out = token_logprobs(model, ids, torch.ones_like(ids), COMPLETION, compute_dtype=torch.bfloat16,
                         with_entropy=True)
    return -(out.logprobs.sum() + 0.1 * out.entropy.sum())


def bf16_reference(master: torch.nn.Module) -> torch.nn.Module:
    """The masters cast to bf16 by hand, parameters trainable: what the copy must compute exactly."""
    ref = replica(master, torch.device("cpu"), torch.bfloat16).train()
    with torch.no_grad():
        for mine, theirs in paired_parameters(ref, master):
            mine.copy_(theirs)
            mine.requires_grad_(True)
    return ref


def test_gradients_land_on_the_fp32_masters_and_accumulate_in_fp32() -> None:
    master = tiny_model()
    weights = Bf16Weights(master)
    ref = bf16_reference(master)
    loss(weights.model()).backward()
    loss(weights.model(), IDS.flip(1)).backward()
    loss(ref).backward()
    first = {n: p.grad.clone() for n, p in ref.named_parameters()}
    ref.zero_grad(set_to_none=True)
    loss(ref, IDS.flip(1)).backward()
    for name, p in master.named_parameters():
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32, name
        # each micro-batch's bf16 gradient is added in fp32, not summed in bf16 first
        want = first[name].float() + dict(ref.named_parameters())[name].grad.float()
        assert torch.equal(p.grad, want), name
    assert all(p.grad is None for p in weights.copy.parameters()), "the copy kept a gradient"
    # the tied head and embedding are one parameter in the copy as in the masters
    assert weights.copy.lm_head.weight is weights.copy.model.embed_tokens.weight


def test_the_copy_follows_an_optimizer_step_and_a_loaded_checkpoint_and_copies_nothing_otherwise() -> None:
    master = tiny_model()
    optimizer = torch.optim.AdamW(master.parameters(), lr=1e-2, fused=True)  # fused: no version counter bump
    weights = Bf16Weights(master, optimizer)
    before = weights.model().model.norm.weight._version
    assert weights.model().model.norm.weight._version == before, "an unchanged master was copied again"
    loss(weights.model()).backward()
    version = master.model.norm.weight._version
    optimizer.step()
    assert master.model.norm.weight._version == version  # only the step hook can tell
    for name, p in weights.model().named_parameters():
        assert torch.equal(p, dict(master.named_parameters())[name].detach().to(torch.bfloat16)), name
    state = {k: v + 1.0 for k, v in master.state_dict().items()}
    master.load_state_dict(state)
    assert torch.equal(weights.model().model.norm.weight, state["model.norm.weight"].to(torch.bfloat16))


def test_the_copy_keeps_the_masters_mode_and_gradient_checkpointing() -> None:
    master = tiny_model()
    master.gradient_checkpointing_enable()
    weights = Bf16Weights(master)
    assert weights.model().training and weights.copy.model.gradient_checkpointing
    master.eval()
    assert not weights.model().training
    # rotary inverse frequencies stay fp32 (rounded to bf16 they would shift every position)
    assert all(b.dtype == torch.float32 for b in weights.copy.buffers() if b.is_floating_point())


def test_a_bf16_cpu_stage_trains_through_the_copy(tmp_path: Path, monkeypatch) -> None:
    from test_grpo_trainer import make_ctx

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda flags=None: True)
    ctx = make_ctx(tmp_path, precision="bf16")
    assert ctx.forward_policy() is ctx.bf16_weights.copy
    assert next(ctx.forward_policy().parameters()).dtype == torch.bfloat16


def test_an_fp32_stage_trains_the_policy_itself(tmp_path: Path) -> None:
    from test_grpo_trainer import make_ctx

    ctx = make_ctx(tmp_path, precision="fp32")
    assert ctx.bf16_weights is None and ctx.forward_policy() is ctx.policy
