"""The policy-gradient loss options (runtime.losses.policy, runtime.losses.advantages) against hand-computed
values and finite differences, and each option's reduction to the strict on-policy GRPO loss."""

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from runtime.logprobs import token_logprobs
from runtime.losses.advantages import advantages, batch_whiten
from runtime.losses.policy import (
    aggregation_weights, clipped_surrogate, is_correction, kl_estimate, kl_in_reward, policy_loss,
)

torch.set_num_threads(2)

# Two rollouts of lengths 3 and 1, right-padded to T = 3 (the example of the GRPO loss's first tests).
LOGP = [[-1.0, -2.0, -0.5], [-0.3, 0.0, 0.0]]
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])
ADV = torch.tensor([[2.0, 2.0, 2.0], [-1.0, -1.0, -1.0]])
SEQ_TOKENS = MASK.sum(1, keepdim=True).expand(-1, 3)


def _weights(mode: str) -> torch.Tensor:
    norm = 4.0 if mode == "token_mean" else 2.0
    return aggregation_weights(MASK, SEQ_TOKENS, mode, norm)


@pytest.mark.parametrize("mode, loss, grad", [
    # -(2 * 3 + (-1) * 1) / 4 tokens; d/dlogp = -A / 4
    ("token_mean", -5.0 / 4.0, [[-0.5, -0.5, -0.5], [0.25, 0.0, 0.0]]),
    # -(2 * 3 + (-1) * 1) / 2 rollouts; d/dlogp = -A / 2
    ("seq_mean_token_sum", -5.0 / 2.0, [[-1.0, -1.0, -1.0], [0.5, 0.0, 0.0]]),
    # -(2 + (-1)) / 2; d/dlogp = -A / (|o_i| * 2)
    ("seq_mean_token_mean", -1.0 / 2.0, [[-1 / 3, -1 / 3, -1 / 3], [0.5, 0.0, 0.0]]),
])
def test_aggregation_modes_hand_computed(mode, loss, grad):
    logp = torch.tensor(LOGP, requires_grad=True)
    out = policy_loss(logp, ADV, _weights(mode))
    assert out.loss.item() == pytest.approx(loss) and out.tokens == 4
    out.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor(grad))


NEUTRAL = [
    {"clip_low": 0.2, "clip_high": 0.28},  # DAPO clip-higher
    {"clip_low": 0.2, "clip_high": 0.2, "dual_clip": 3.0},
    {"is_weight": "tis"}, {"is_weight": "icepop"},
    {"kl_coef": 0.0, "ref": True, "kl_estimator": "k1"},
]


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean"])
@pytest.mark.parametrize("option", NEUTRAL, ids=lambda o: "+".join(o))
def test_every_option_reduces_to_the_strict_on_policy_grpo_loss(option, mode):
    """One update (old = sg[logp], ratio 1), engine log-probs equal to the trainer's, no KL: the loss and its
    gradient equal today's ``-sum w A log pi``."""
    kwargs = dict(option)
    logp = torch.tensor(LOGP, requires_grad=True)
    if "is_weight" in kwargs:
        kwargs["is_weight"] = is_correction(logp.detach(), logp.detach(), kwargs["is_weight"], (0.5, 2.0))[0]
    if kwargs.pop("ref", False):
        kwargs["ref"] = logp.detach() - 0.3
    out = policy_loss(logp, ADV, _weights(mode), old=logp.detach(), **kwargs)
    out.loss.backward()
    plain = torch.tensor(LOGP, requires_grad=True)
    today = -(ADV * plain * _weights(mode)).sum()
    today.backward()
    torch.testing.assert_close(logp.grad, plain.grad)
    assert out.clipped_sum == 0.0
    assert out.loss.item() == pytest.approx(-(ADV * _weights(mode)).sum().item())


def test_clip_higher_hand_computed():
    ratio = torch.tensor([0.5, 1.5, 1.1, 0.7, 1.5])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, -1.0])
    loss, clipped = clipped_surrogate(ratio, adv, clip_low=0.2, clip_high=0.28, dual_clip=None)
    # A > 0: -min(r, clip(r)) -> r = 0.5 stays 0.5 (pessimistic), r = 1.5 clipped to 1.28;
    # A < 0: -min(-r, -clip(r)) = max(r, clip(r)) -> 1.1 stays, 0.7 becomes 0.8, 1.5 stays 1.5.
    torch.testing.assert_close(loss, torch.tensor([-0.5, -1.28, 1.1, 0.8, 1.5]))
    assert clipped.tolist() == [False, True, False, True, False]


def test_dual_clip_caps_a_negative_advantage():
    ratio = torch.tensor([5.0, 5.0, 2.0], requires_grad=True)
    adv = torch.tensor([-1.0, 1.0, -1.0])
    loss, clipped = clipped_surrogate(ratio, adv, clip_low=0.2, clip_high=0.2, dual_clip=3.0)
    # A = -1, r = 5: PPO gives max(5, 1.2) = 5, the dual clip caps it at c = 3 (constant: no gradient).
    # A = +1, r = 5: -min(5, 1.2) = -1.2 (untouched by the dual clip). A = -1, r = 2: 2 < 3 stays.
    torch.testing.assert_close(loss.detach(), torch.tensor([3.0, -1.2, 2.0]))
    assert clipped.tolist() == [True, True, False]
    loss.sum().backward()
    torch.testing.assert_close(ratio.grad, torch.tensor([0.0, 0.0, 1.0]))


def test_is_corrections_hand_computed():
    old = torch.log(torch.tensor([0.5, 0.5, 0.5, 0.1]))
    inf = torch.log(torch.tensor([0.5, 0.2, 0.9, 0.5]))  # ratios 1, 2.5, 0.5556, 0.2
    w, out = is_correction(old, inf, "tis", (0.5, 2.0))
    torch.testing.assert_close(w, torch.tensor([1.0, 2.0, 5 / 9, 0.2]))
    assert out.tolist() == [False, True, False, False]
    w, out = is_correction(old, inf, "icepop", (0.5, 2.0))
    torch.testing.assert_close(w, torch.tensor([1.0, 0.0, 5 / 9, 0.0]))
    assert out.tolist() == [False, True, False, True]
    w, out = is_correction(old, inf, "none", (0.5, 2.0))
    assert w.tolist() == [1.0] * 4 and not out.any()
    with pytest.raises(ValueError, match="unknown importance-sampling correction"):
        is_correction(old, inf, "clip", (0.5, 2.0))


def test_kl_estimators_hand_computed():
    logp = torch.log(torch.tensor([0.25, 0.5]))
    ref = torch.log(torch.tensor([0.5, 0.5]))  # log r = ln 2, then 0
    ln2 = math.log(2.0)
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([-ln2, 0.0]))
    torch.testing.assert_close(kl_estimate(logp, ref, "k2"), torch.tensor([ln2 * ln2 / 2, 0.0]))
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), torch.tensor([1.0 - ln2, 0.0]))
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_estimate(logp, ref, "k4")


def test_kl_in_the_reward_sums_the_tokens_of_each_rollout():
    kl = torch.tensor([[0.1, 0.2, 9.0], [0.5, 9.0, 9.0]])
    shaped = kl_in_reward(torch.tensor([1.0, 0.0]), kl, MASK, coef=0.5)
    torch.testing.assert_close(shaped, torch.tensor([1.0 - 0.5 * 9.3, 0.0 - 0.5 * 0.5]))


def test_advantage_estimators_hand_computed():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    torch.testing.assert_close(advantages("dr_grpo", r, 4), torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0.0]))
    # leave-one-out: 1 - 0 = 1; 0 - 1/3 = -1/3
    torch.testing.assert_close(advantages("rloo", r, 4), torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3, 0, 0, 0, 0.0]))
    torch.testing.assert_close(advantages("grpo", r, 4)[:4], torch.tensor([1.5, -0.5, -0.5, -0.5]), atol=1e-5, rtol=0)
    # REINFORCE++-baseline: centred [0.75, -0.25 x3, 0 x4], token weights [2, 1, 1, 0, 1, 1, 1, 1]:
    # mean = (1.5 - 0.5) / 8 = 0.125, E[x^2] = (2 * 0.5625 + 2 * 0.0625) / 8 = 0.15625,
    # var = (0.15625 - 0.015625) * 8 / 7
    lengths = torch.tensor([2.0, 1, 1, 0, 1, 1, 1, 1])
    var = (0.15625 - 0.125 ** 2) * 8 / 7
    expected = (torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]) - 0.125) / math.sqrt(var + 1e-8)
    torch.testing.assert_close(advantages("reinforce_pp_baseline", r, 4, lengths=lengths), expected)
    with pytest.raises(ValueError, match="needs the rollout lengths"):
        advantages("reinforce_pp_baseline", r, 4)
    with pytest.raises(ValueError, match="unknown advantage estimator"):
        advantages("ppo", r, 4)


def test_batch_whitening_reduces_over_ranks():
    """Two ranks' halves whitened with summed statistics equal the whole batch whitened at once."""
    values, weights = torch.tensor([1.0, -2.0, 0.5, 3.0]), torch.tensor([1.0, 2.0, 3.0, 1.0])
    whole = batch_whiten(values, weights)
    stats = [torch.stack([w.sum(), (w * v).sum(), (w * v * v).sum()])
             for v, w in ((values[:2], weights[:2]), (values[2:], weights[2:]))]
    total = stats[0] + stats[1]
    halves = torch.cat([batch_whiten(values[:2], weights[:2], lambda s: total),
                        batch_whiten(values[2:], weights[2:], lambda s: total)])
    torch.testing.assert_close(halves, whole)


def test_micro_batches_add_up_to_the_mini_batch():
    gen = torch.Generator().manual_seed(0)
    logp = -torch.rand(6, 5, generator=gen)
    old = logp - 0.3 * torch.randn(6, 5, generator=gen)
    mask = (torch.rand(6, 5, generator=gen) > 0.3).long()
    adv = torch.randn(6, 1, generator=gen).expand(-1, 5)
    ref = -torch.rand(6, 5, generator=gen)
    seq = mask.sum(1, keepdim=True).expand(-1, 5)
    for mode in ("token_mean", "seq_mean_token_sum", "seq_mean_token_mean"):
        norm = float(mask.sum()) if mode == "token_mean" else float((mask.sum(1) > 0).sum())
        kw = dict(old=old, clip_low=0.2, clip_high=0.28, dual_clip=3.0, ref=ref, kl_coef=0.1)
        full = policy_loss(logp, adv, aggregation_weights(mask, seq, mode, norm), **kw).loss
        parts = sum(policy_loss(logp[s:s + 2], adv[s:s + 2], aggregation_weights(mask[s:s + 2], seq[s:s + 2], mode, norm),
                                **{k: v[s:s + 2] if torch.is_tensor(v) else v for k, v in kw.items()}).loss
                    for s in (0, 2, 4))
        torch.testing.assert_close(parts, full)


def test_shape_and_missing_inputs_are_reported():
    with pytest.raises(ValueError, match="kl_coef > 0 needs ref"):
        policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), kl_coef=0.1)
    with pytest.raises(ValueError, match="equal shapes"):
        policy_loss(torch.zeros(1, 2), torch.zeros(2), torch.ones(1, 2))
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        aggregation_weights(MASK, SEQ_TOKENS, "seq_sum", 1.0)


def _tiny_double() -> GPT2LMHeadModel:
    # GPT-2 keeps fp64 end to end (Llama's RMSNorm computes in fp32, which would swamp a finite difference).
    torch.manual_seed(3)
    cfg = GPT2Config(vocab_size=23, n_embd=16, n_layer=1, n_head=2, n_positions=32,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg).double()


def _reference_objective(lp, old, inf, ref, adv, w, opt):
    """The loss written out independently: -min(r A, clip(r) A) (dual-capped) * c + beta * KL."""
    r = torch.exp(lp - old)
    a = adv
    ppo = -torch.minimum(r * a, r.clamp(1 - opt["clip_low"], 1 + opt["clip_high"]) * a)
    ppo = torch.where(a < 0, torch.minimum(ppo, -opt["dual_clip"] * a), ppo)
    c = torch.exp(old - inf).clamp(max=2.0) if opt["is"] == "tis" else torch.ones_like(lp)
    log_r = ref - lp
    kl = {"k1": -log_r, "k2": 0.5 * log_r ** 2, "k3": torch.exp(log_r) - 1 - log_r}[opt["kl"]]
    return (w * (c * ppo + opt["beta"] * kl)).sum()


@pytest.mark.parametrize("opt", [
    {"clip_low": 0.2, "clip_high": 0.28, "dual_clip": 3.0, "is": "tis", "kl": "k1", "beta": 0.1,
     "agg": "token_mean"},
    {"clip_low": 0.1, "clip_high": 0.1, "dual_clip": 1.5, "is": "none", "kl": "k2", "beta": 0.2,
     "agg": "seq_mean_token_sum"},
    {"clip_low": 0.3, "clip_high": 0.5, "dual_clip": 2.0, "is": "tis", "kl": "k3", "beta": 0.05,
     "agg": "seq_mean_token_mean"},
], ids=["tis-k1-token_mean", "k2-seq_sum", "k3-seq_mean"])
def test_gradient_matches_finite_difference(opt):
    """Off-policy (a later update: old != logp, some tokens clipped), with IS correction and KL: the gradient
    of policy_loss equals central differences of the independently written objective."""
    model = _tiny_double()
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 23, (4, 7), generator=gen)
    attn = torch.ones_like(ids)
    comp = torch.zeros_like(ids)
    comp[:, 3:] = 1
    comp[3, 5:] = 0
    mask = comp.clone()
    mask[:, 0] = 0
    adv = torch.tensor([1.0, -0.5, 0.25, -0.75], dtype=torch.float64).unsqueeze(1).expand(-1, 7)
    with torch.no_grad():
        base = token_logprobs(model, ids, attn, comp, chunk=3).logprobs.double()
    old = base + 0.3 * torch.randn(4, 7, generator=gen, dtype=torch.float64)
    inf = old + 0.1 * torch.randn(4, 7, generator=gen, dtype=torch.float64)
    ref = base - torch.rand(4, 7, generator=gen, dtype=torch.float64)
    seq = mask.sum(1, keepdim=True).expand(-1, 7)
    norm = float(mask.sum()) if opt["agg"] == "token_mean" else 4.0
    w = aggregation_weights(mask, seq, opt["agg"], norm).double()

    def objective() -> torch.Tensor:
        lp = token_logprobs(model, ids, attn, comp, chunk=3).logprobs.double()
        return _reference_objective(lp, old, inf, ref, adv, w, opt)

    lp = token_logprobs(model, ids, attn, comp, chunk=3).logprobs
    c, _ = is_correction(old, inf, opt["is"], (0.5, 2.0))
    out = policy_loss(lp, adv, w, old=old, clip_low=opt["clip_low"], clip_high=opt["clip_high"],
                      dual_clip=opt["dual_clip"], is_weight=c, ref=ref, kl_coef=opt["beta"], kl_estimator=opt["kl"])
    assert out.clipped_sum > 0  # some tokens sit outside the trust region: the clip is exercised
    torch.testing.assert_close(out.loss, objective())
    out.loss.backward()
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
    assert abs(predicted) > 1e-4  # the check is not vacuous
    assert numeric == pytest.approx(predicted, rel=1e-5)
