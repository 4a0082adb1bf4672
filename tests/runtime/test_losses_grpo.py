"""GRPO advantages and loss against hand-computed values, and a finite-difference check of its gradient."""

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from runtime.logprobs import token_logprobs
from runtime.losses.grpo import apply_overlong, group_advantages, grpo_loss, informative_groups, k3_kl

torch.set_num_threads(2)


def test_advantages_hand_computed_with_zero_std_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    # group 1: mean 0.25, Bessel std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5; group 2: all equal -> 0.
    adv = group_advantages(rewards, 4, eps=0.0)
    torch.testing.assert_close(adv, torch.tensor([1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]))
    assert informative_groups(rewards, 4).tolist() == [True, False]


def test_advantages_reject_bad_groups():
    with pytest.raises(ValueError, match="do not split into groups of 3"):
        group_advantages(torch.zeros(4), 3)


def test_token_mean_loss_and_gradient_hand_computed():
    # Two rollouts of lengths 3 and 1 (right-padded to T = 3).
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv = torch.tensor([2.0, -1.0])
    parts = grpo_loss(logprobs, mask, adv)
    # ratio == 1 in value: L = -(2 * 3 + (-1) * 1) / 4 tokens.
    assert parts.loss.item() == pytest.approx(-5.0 / 4.0)
    assert parts.tokens == 4
    parts.loss.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-0.5, -0.5, -0.5], [0.25, 0.0, 0.0]]))


def test_seq_mean_loss_gradient_hand_computed():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv = torch.tensor([2.0, -1.0])
    parts = grpo_loss(logprobs, mask, adv, aggregation="seq_mean")
    assert parts.loss.item() == pytest.approx(-(2.0 + -1.0) / 2.0)
    parts.loss.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-1 / 3, -1 / 3, -1 / 3], [0.5, 0.0, 0.0]]))


def test_micro_batches_add_up_to_full_batch():
    gen = torch.Generator().manual_seed(0)
    logprobs = -torch.rand(6, 5, generator=gen)
    mask = (torch.rand(6, 5, generator=gen) > 0.3).long()
    adv = torch.randn(6, generator=gen)
    ref = -torch.rand(6, 5, generator=gen)
    for agg in ("token_mean", "seq_mean"):
        full = grpo_loss(logprobs, mask, adv, aggregation=agg, ref_logprobs=ref, kl_coef=0.1).loss
        norm = float(mask.sum()) if agg == "token_mean" else float((mask.sum(1) > 0).sum())
        parts = [grpo_loss(logprobs[s:s + 2], mask[s:s + 2], adv[s:s + 2], aggregation=agg, normaliser=norm,
                           ref_logprobs=ref[s:s + 2], kl_coef=0.1).loss for s in (0, 2, 4)]
        torch.testing.assert_close(sum(parts), full)


def test_k3_kl_values():
    p = torch.tensor([math.log(0.5), math.log(0.25)])
    q = torch.tensor([math.log(0.5), math.log(0.5)])
    # exp(q - p) - (q - p) - 1: 0 where equal; 2 - ln 2 - 1 where pi_ref = 2 pi.
    torch.testing.assert_close(k3_kl(p, q), torch.tensor([0.0, 1.0 - math.log(2.0)]))


def test_overlong_penalty_and_filter():
    rewards = torch.tensor([1.0, 1.0, 0.0])
    truncated = torch.tensor([False, True, True])
    pen, keep = apply_overlong(rewards, truncated, "penalty")
    assert pen.tolist() == [1.0, 0.0, 0.0] and keep.all()
    kept_rewards, keep = apply_overlong(rewards, truncated, "filter")
    assert kept_rewards.tolist() == [1.0, 1.0, 0.0] and keep.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="unknown overlong mode"):
        apply_overlong(rewards, truncated, "drop")


def test_missing_reference_is_reported():
    with pytest.raises(ValueError, match="kl_coef > 0 needs ref_logprobs"):
        grpo_loss(torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1), kl_coef=0.1)


def _tiny_double() -> GPT2LMHeadModel:
    # GPT-2 keeps fp64 end to end (Llama's RMSNorm computes in fp32, which would swamp a finite difference).
    torch.manual_seed(3)
    cfg = GPT2Config(vocab_size=23, n_embd=16, n_layer=1, n_head=2, n_positions=32,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg).double()


@pytest.mark.parametrize("kl_coef", [0.0, 0.2])
def test_loss_gradient_matches_finite_difference(kl_coef):
    """The surrogate's gradient equals the gradient of -sum A log pi / N (+ beta * KL), by central differences."""
    model = _tiny_double()
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 23, (4, 7), generator=gen)
    attn = torch.ones_like(ids)
    comp = torch.zeros_like(ids)
    comp[:, 3:] = 1
    comp[3, 5:] = 0
    adv = torch.tensor([1.0, -0.5, 0.25, -0.75], dtype=torch.float64)
    ref = -torch.rand(4, 7, generator=gen, dtype=torch.float64)

    def objective() -> torch.Tensor:
        lp = token_logprobs(model, ids, attn, comp, chunk=3).logprobs.double()
        m = comp.double().clone()
        m[:, 0] = 0
        value = -(adv.unsqueeze(1) * lp * m).sum() / m.sum()
        return value + kl_coef * (k3_kl(lp, ref) * m).sum() / m.sum()

    lp = token_logprobs(model, ids, attn, comp, chunk=3).logprobs
    mask = comp.clone()
    mask[:, 0] = 0
    grpo_loss(lp, mask, adv, ref_logprobs=ref, kl_coef=kl_coef).loss.backward()
    params = list(model.parameters())
    analytic = [p.grad.clone() for p in params]
    direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    eps = 1e-6
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(eps * d)
        plus = objective().item()
        for p, d in zip(params, direction):
            p.sub_(2 * eps * d)
        minus = objective().item()
        for p, d in zip(params, direction):
            p.add_(eps * d)
    numeric = (plus - minus) / (2 * eps)
    predicted = sum(float((g * d).sum()) for g, d in zip(analytic, direction))
    assert abs(predicted) > 1e-3  # the check is not vacuous
    assert numeric == pytest.approx(predicted, rel=1e-6)
