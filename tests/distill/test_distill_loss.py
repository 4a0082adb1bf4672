"""MOPD and GKD-style losses: hand-computed values, gating, masks, and gradient identities."""

from __future__ import annotations

import importlib.util
import itertools
import math

import pytest
import torch

from runtime.losses.distill import (
    logit_distill_loss,
    mopd_loss,
    reverse_kl_estimate,
    sequence_token_mean,
    token_divergence,
)

torch.set_num_threads(2)
D = torch.float64


def _batch():
    """Three sequences routed to three different teachers; row 1 has one padding position."""
    lp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -9.0], [-2.0, -0.1, -0.7]], dtype=D)
    teacher = torch.tensor([[-0.5, -2.5, -0.5], [-0.1, -0.2, -1.0], [-1.0, -0.1, -3.0]], dtype=D)
    # importance ratios pi_train / pi_inf chosen per token; 3.0 and 0.4 are outside (0.5, 2.0)
    ratio = torch.tensor([[1.0, 3.0, 0.55], [1.5, 0.4, 1.0], [1.95, 1.0, 1.0]], dtype=D)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    return lp, teacher, lp - ratio.log(), mask


def test_mopd_loss_matches_hand_computation():
    lp, teacher, inf, mask = _batch()
    lp = lp.clone().requires_grad_(True)
    out = mopd_loss(lp, teacher, inf, mask)
    # row 0: a=[.5,-.5,0] w=[1,0(gated),.55] -> (1*.5*-1)/3
    # row 1: a=[.2,1.0] w=[1.5,0(gated)] -> (1.5*.2*-.3)/2
    # row 2: a=[1,0,-2.3] w=[1.95,1,1] -> (1.95*1*-2 + 1*-2.3*-.7)/3
    rows = [(-0.5) / 3, (1.5 * 0.2 * -0.3) / 2, (1.95 * -2.0 + 2.3 * 0.7) / 3]
    assert out.loss.item() == pytest.approx(-sum(rows) / 3, abs=1e-12)
    assert out.gated.tolist() == [[False, True, False], [False, True, False], [False, False, False]]
    assert out.weight[1, 2].item() == 0.0 and out.advantage[1, 2].item() == 0.0
    out.loss.backward()
    # dL/dlogp_t = -w_t a_t / |V(y)| / n_seq: advantage and weight are stop-gradient
    expected = -(out.weight * out.advantage) / mask.sum(-1, keepdim=True).to(D) / 3
    torch.testing.assert_close(lp.grad, expected)


def test_mopd_band_is_a_hard_inclusive_gate():
    lp = torch.tensor([[-1.0, -1.0, -1.0, -1.0]], dtype=D)
    teacher = torch.zeros_like(lp)
    ratio = torch.tensor([[0.49, 0.5, 2.0, 2.01]], dtype=D)
    out = mopd_loss(lp, teacher, lp - ratio.log(), torch.ones_like(lp, dtype=torch.bool), eps_low=0.5, eps_high=2.0)
    assert out.gated.tolist() == [[True, False, False, True]]
    # a gated token is dropped (weight 0), it is not clipped to the band edge
    assert out.weight[0, 0].item() == 0.0 and out.weight[0, 3].item() == 0.0
    assert out.weight[0, 1].item() == pytest.approx(0.5) and out.weight[0, 2].item() == pytest.approx(2.0)
    exact = mopd_loss(lp, teacher, lp.clone(), torch.ones_like(lp, dtype=torch.bool), eps_low=1.0, eps_high=1.0)
    assert not exact.gated.any()


def test_mopd_padding_values_and_empty_sequences_do_not_leak():
    lp, teacher, inf, mask = _batch()
    lp2, teacher2, inf2 = lp.clone(), teacher.clone(), inf.clone()
    lp2[1, 2], teacher2[1, 2], inf2[1, 2] = -math.inf, math.nan, 50.0
    a = mopd_loss(lp, teacher, inf, mask).loss
    b = mopd_loss(lp2, teacher2, inf2, mask).loss
    assert a.item() == pytest.approx(b.item(), abs=1e-12)
    # a fourth, empty sequence is left out of the mean over sequences
    pad = torch.zeros(1, 3, dtype=D)
    c = mopd_loss(
        torch.cat([lp, pad]), torch.cat([teacher, pad]), torch.cat([inf, pad]),
        torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)]),
    ).loss
    assert c.item() == pytest.approx(a.item(), abs=1e-12)
    all_empty = mopd_loss(pad, pad, pad, torch.zeros(1, 3, dtype=torch.bool))
    assert all_empty.loss.item() == 0.0


def test_mopd_rejects_bad_shapes_and_band():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="shapes"):
        mopd_loss(x, x, torch.zeros(2, 4), x.bool())
    with pytest.raises(ValueError, match="band"):
        mopd_loss(x, x, x, x.bool(), eps_low=2.0, eps_high=0.5)


def test_reverse_kl_estimate_is_mean_negative_advantage():
    lp, teacher, inf, mask = _batch()
    out = mopd_loss(lp, teacher, inf, mask)
    est = reverse_kl_estimate(lp, teacher, mask)
    assert est.item() == pytest.approx((-out.advantage[mask]).mean().item(), abs=1e-12)
    assert est.item() == pytest.approx((-0.5 + 0.5 + 0 - 0.2 - 1.0 - 1.0 + 0 + 2.3) / 8, abs=1e-12)


def test_sequence_token_mean():
    v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert sequence_token_mean(v, m).item() == pytest.approx((2.0 + 4.0) / 2)


def _tiny_lm(seed: int, vocab: int = 8):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=16,
    )
    return LlamaForCausalLM(cfg).to(D).eval()


def test_mopd_gradient_equals_reverse_kl_policy_gradient_on_a_tiny_model():
    """Summed over every 2-token completion weighted by its probability (exact expectation, w=1), the MOPD
    gradient equals the per-token estimator of grad KL(pi_train || pi_teacher) with discount 0:
    (1/T) sum_t E_{s_t}[grad KL(pi(.|s_t) || teacher(.|s_t))], state distribution held fixed."""
    vocab, prompt = 8, [1, 5, 2]
    student, teacher = _tiny_lm(0, vocab), _tiny_lm(1, vocab)
    seqs = torch.tensor([prompt + list(y) for y in itertools.product(range(vocab), repeat=2)])
    n_p = len(prompt)

    logits = student(seqs).logits[:, n_p - 1 : -1]  # [N, 2, V] predicting the two completion tokens
    with torch.no_grad():
        t_logits = teacher(seqs).logits[:, n_p - 1 : -1]
    s_logp_all, t_logp_all = logits.log_softmax(-1), t_logits.log_softmax(-1)
    comp = seqs[:, n_p:]
    lp = s_logp_all.gather(-1, comp[..., None])[..., 0]
    lp_t = t_logp_all.gather(-1, comp[..., None])[..., 0]
    prob = lp.detach().sum(-1).exp()  # P(y) under the student, no gradient through the sampling weights

    mask = torch.ones_like(lp, dtype=torch.bool)
    params = [p for p in student.parameters() if p.requires_grad]
    # E_y[grad L(y)]: per-sequence MOPD losses (batch of one each), weighted by P(y)
    per_seq = torch.stack([mopd_loss(lp[i : i + 1], lp_t[i : i + 1], lp[i : i + 1].detach(), mask[i : i + 1]).loss
                           for i in range(len(seqs))])
    g_mopd = torch.autograd.grad((prob * per_seq).sum(), params, retain_graph=True)

    kl = token_divergence(s_logp_all, t_logp_all, "reverse_kl")  # [N, 2]
    # position 0 has one state (the prompt), shared by all rows: average with P(y) weights (they sum to 1);
    # position 1's state is (prompt, y_1): P(y) weights marginalise y_2 away correctly.
    target = (prob[:, None] * kl).sum() / 2
    g_kl = torch.autograd.grad(target, params)
    assert prob.sum().item() == pytest.approx(1.0, abs=1e-10)
    for a, b in zip(g_mopd, g_kl):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    assert max(a.abs().max().item() for a in g_mopd) > 1e-4  # the identity is not 0 == 0


def _gkd_reference(s_logits, t_logits, beta):
    """GKD Eq. 1 written out with probabilities: JSD(beta) = beta KL(P_T||M) + (1-beta) KL(P_S||M)."""
    p_s, p_t = s_logits.softmax(-1), t_logits.softmax(-1)
    if beta == 0.0:
        return (p_t * (p_t.log() - p_s.log())).sum(-1)
    if beta == 1.0:
        return (p_s * (p_s.log() - p_t.log())).sum(-1)
    m = beta * p_t + (1 - beta) * p_s
    return beta * (p_t * (p_t / m).log()).sum(-1) + (1 - beta) * (p_s * (p_s / m).log()).sum(-1)


KINDS = [("forward_kl", 0.0), ("reverse_kl", 1.0), ("jsd", 0.1), ("jsd", 0.5), ("jsd", 0.9)]


@pytest.mark.parametrize(("kind", "beta"), KINDS)
def test_logit_divergence_matches_gkd_definition(kind, beta):
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 4, 11, generator=g, dtype=D)
    t = torch.randn(2, 4, 11, generator=g, dtype=D) * 2
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    loss, per_tok = logit_distill_loss(s, t, mask, kind=kind, beta=beta)
    ref = _gkd_reference(s, t, beta)
    torch.testing.assert_close(per_tok[mask], ref[mask])
    assert per_tok[~mask].abs().sum().item() == 0.0
    assert loss.item() == pytest.approx(((ref[0, :3].mean() + ref[1, :2].mean()) / 2).item(), abs=1e-12)


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl is not installed")
@pytest.mark.parametrize(("kind", "beta"), KINDS)
def test_logit_divergence_matches_trl_generalized_jsd(kind, beta, monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    g = torch.Generator().manual_seed(4)
    s = torch.randn(3, 5, 13, generator=g, dtype=D, requires_grad=True)
    t = torch.randn(3, 5, 13, generator=g, dtype=D)
    mask = torch.rand(3, 5, generator=g) > 0.3
    mask[:, 0] = True
    labels = torch.where(mask, 0, -100)
    trl_loss = GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=beta)  # token mean over valid positions
    _, per_tok = logit_distill_loss(s, t, mask, kind=kind, beta=beta)
    assert per_tok[mask].mean().item() == pytest.approx(trl_loss.item(), rel=1e-10)
    # gradients agree too when both are reduced as a token mean
    ours = token_divergence(s.log_softmax(-1), t.log_softmax(-1), kind, beta)[mask].mean()
    g_ours = torch.autograd.grad(ours, s)[0]
    g_trl = torch.autograd.grad(GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=beta), s)[0]
    torch.testing.assert_close(g_ours, g_trl)


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl is not installed")
def test_mopd_expected_gradient_equals_trl_reverse_kl_gradient(monkeypatch):
    """The equivalent setting of TRL's on-policy distillation (beta=1, reverse KL over the full vocabulary):
    the expectation of the MOPD gradient over the sampled token equals the gradient of TRL's loss."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    g = torch.Generator().manual_seed(5)
    V = 7
    z = torch.randn(1, 1, V, generator=g, dtype=D, requires_grad=True)
    t = torch.randn(1, 1, V, generator=g, dtype=D)
    logp = z.log_softmax(-1)
    one = torch.ones(1, 1, dtype=torch.bool)
    expected = sum(
        logp[0, 0, v].detach().exp()
        * mopd_loss(logp[..., v], t.log_softmax(-1)[..., v], logp[..., v].detach(), one).loss
        for v in range(V)
    )
    g_mopd = torch.autograd.grad(expected, z)[0]
    g_trl = torch.autograd.grad(GKDTrainer.generalized_jsd_loss(z, t, beta=1.0), z)[0]
    torch.testing.assert_close(g_mopd, g_trl)


def test_top_k_renormalises_over_the_teacher_top_tokens():
    g = torch.Generator().manual_seed(6)
    s = torch.randn(1, 2, 9, generator=g, dtype=D)
    t = torch.randn(1, 2, 9, generator=g, dtype=D)
    mask = torch.ones(1, 2, dtype=torch.bool)
    _, full = logit_distill_loss(s, t, mask, kind="forward_kl")
    _, k_all = logit_distill_loss(s, t, mask, kind="forward_kl", top_k=9)
    torch.testing.assert_close(full, k_all)
    _, k3 = logit_distill_loss(s, t, mask, kind="forward_kl", top_k=3)
    idx = t.topk(3, dim=-1).indices
    ref = _gkd_reference(s.gather(-1, idx), t.gather(-1, idx), 0.0)
    torch.testing.assert_close(k3, ref)


def test_padded_teacher_embedding_is_cut_to_the_shared_vocabulary():
    g = torch.Generator().manual_seed(7)
    s = torch.randn(1, 2, 10, generator=g, dtype=D)
    t = torch.randn(1, 2, 10, generator=g, dtype=D)
    padded = torch.cat([t, torch.full((1, 2, 6), 30.0, dtype=D)], dim=-1)  # 6 padding rows, large logits
    mask = torch.ones(1, 2, dtype=torch.bool)
    a, _ = logit_distill_loss(s, t, mask, kind="reverse_kl")
    b, _ = logit_distill_loss(s, padded, mask, kind="reverse_kl")
    assert a.item() == pytest.approx(b.item(), abs=1e-12)
    c, _ = logit_distill_loss(s, padded, mask, kind="reverse_kl", vocab_size=8)
    ref = _gkd_reference(s[..., :8], t[..., :8], 1.0).mean()
    assert c.item() == pytest.approx(ref.item(), abs=1e-12)


def test_jsd_beta_must_be_inside_the_open_interval():
    x = torch.zeros(1, 1, 3)
    with pytest.raises(ValueError, match="0 < beta < 1"):
        logit_distill_loss(x, x, torch.ones(1, 1, dtype=torch.bool), kind="jsd", beta=1.0)
    with pytest.raises(ValueError, match="unknown divergence"):
        token_divergence(x, x, "tvd")  # type: ignore[arg-type]
