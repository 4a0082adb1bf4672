"""runtime/ops/token_divergence.py against runtime.losses.distill on full logits (CPU fp64; bf16 on CUDA)."""

from __future__ import annotations

import pytest
import torch

from runtime.losses.distill import logit_distill_loss, restrict_logprobs, token_divergence
from runtime.ops.token_divergence import linear_token_divergence

torch.set_num_threads(2)


def inputs(dtype=torch.float64, device="cpu", n=29, d=12, v=40, vt=44, seed=0):
    gen = torch.Generator().manual_seed(seed)
    draw = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64).to(device, dtype)  # noqa: E731
    hidden, weight = draw(n, d).requires_grad_(), draw(v, d).requires_grad_()
    t_hidden, t_weight = draw(n, d + 2), draw(vt, d + 2)
    targets = torch.randint(0, min(v, vt) - 6, (n,), generator=gen).to(device)
    grad = draw(n)
    return hidden, weight, t_hidden, t_weight, targets, grad


@pytest.mark.parametrize("kind,top_k,temperature", [("reverse_kl", 0, 1.0), ("forward_kl", 0, 0.7),
                                                    ("jsd", 0, 1.0), ("reverse_kl", 7, 1.3)])
def test_values_and_gradients_match_the_loss_on_full_logits(kind, top_k, temperature):
    hidden, weight, t_hidden, t_weight, targets, grad = inputs()
    settings = {"kind": kind, "beta": 0.3, "top_k": top_k, "vocab_size": 34}
    div, logp, logp_t, entropy = linear_token_divergence(hidden, weight, t_hidden, t_weight, targets, chunk=8,
                                                         temperature=temperature, **settings)
    (div * grad).sum().backward()
    got = (hidden.grad.clone(), weight.grad.clone())
    hidden.grad = weight.grad = None
    z, zt = hidden @ weight.T / temperature, t_hidden @ t_weight.T / temperature
    _, per_token = logit_distill_loss(z[None], zt[None], torch.ones(1, len(z), dtype=torch.bool), **settings)
    # logit_distill_loss returns the divergence detached; recompute it with grad through the same path
    s, t = restrict_logprobs(z, zt, 34, top_k)
    ref = token_divergence(s, t, kind, 0.3)
    (ref * grad).sum().backward()
    assert torch.allclose(div, per_token[0], atol=1e-10) and torch.allclose(div, ref.detach(), atol=1e-10)
    assert torch.allclose(got[0], hidden.grad, atol=1e-10) and torch.allclose(got[1], weight.grad, atol=1e-10)
    lp, lp_t = z[:, :34].log_softmax(-1), zt[:, :34].log_softmax(-1)
    assert torch.allclose(logp, lp.gather(-1, targets[:, None])[:, 0].detach(), atol=1e-10)
    assert torch.allclose(logp_t, lp_t.gather(-1, targets[:, None])[:, 0].detach(), atol=1e-10)
    assert torch.allclose(entropy, -(lp.exp() * lp).sum(-1).detach(), atol=1e-10)
    assert not (logp.requires_grad or logp_t.requires_grad or entropy.requires_grad)


def test_bad_shapes_and_settings_are_refused():
    hidden, weight, t_hidden, t_weight, targets, _ = inputs()
    with pytest.raises(ValueError, match="must match"):
        linear_token_divergence(hidden, weight, t_hidden[:-1], t_weight, targets, kind="reverse_kl")
    with pytest.raises(ValueError, match="positive"):
        linear_token_divergence(hidden, weight, t_hidden, t_weight, targets, kind="reverse_kl", chunk=0)
    with pytest.raises(ValueError, match="unknown divergence"):
        linear_token_divergence(hidden, weight, t_hidden, t_weight, targets, kind="kl")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_is_close_to_fp64():
    hidden, weight, t_hidden, t_weight, targets, grad = inputs(n=4096, d=64, v=4000, vt=4000)
    ref, *_ = linear_token_divergence(hidden, weight, t_hidden, t_weight, targets, kind="reverse_kl")
    (ref * grad).sum().backward()
    cuda = [x.detach().float().cuda().requires_grad_(x.requires_grad) for x in (hidden, weight, t_hidden, t_weight)]
    div, *_ = linear_token_divergence(*cuda, targets.cuda(), kind="reverse_kl", compute_dtype=torch.bfloat16)
    (div * grad.float().cuda()).sum().backward()
    rel = lambda a, b: float((a.double().cpu() - b).norm() / b.norm())  # noqa: E731
    assert rel(div.detach(), ref.detach()) < 2e-2
    assert rel(cuda[0].grad, hidden.grad) < 3e-2 and rel(cuda[1].grad, weight.grad) < 3e-2


@pytest.mark.parametrize("kind,top_k,chunk", [("reverse_kl", 0, 8), ("jsd", 0, 64), ("forward_kl", 7, 8)])
def test_the_kept_graph_gives_the_recomputed_gradients_bit_for_bit(monkeypatch, kind, top_k, chunk):
    """Up to KEEP_GRAPH_ELEMENTS the forward's autograd graph is kept for backward; above it backward recomputes
    each chunk. Both are the same operations on the same values, in bf16 as the trainers run them."""
    import runtime.ops.token_divergence as op

    def run(limit):
        monkeypatch.setattr(op, "KEEP_GRAPH_ELEMENTS", limit)
        hidden, weight, t_hidden, t_weight, targets, grad = inputs(torch.float32)
        hidden, weight = (x.detach().requires_grad_() for x in (hidden, weight))
        out = linear_token_divergence(hidden, weight, t_hidden.bfloat16(), t_weight.bfloat16(), targets, kind=kind,
                                      beta=0.3, top_k=top_k, vocab_size=34, chunk=chunk, compute_dtype=torch.bfloat16)
        (out[0] * grad.float()).sum().backward()
        return [*out, hidden.grad, weight.grad]

    kept, recomputed = run(10**9), run(0)
    for a, b in zip(kept, recomputed):
        assert torch.equal(a, b)


@pytest.mark.parametrize("top_k", [0, 7])
def test_the_metrics_are_the_full_vocabulary_log_probs_exactly(top_k):
    """The sampled token's log-probs come from the divergence's own log-softmax when it spans the shared
    vocabulary (top_k 0), and from a separate one over the whole shared vocabulary otherwise."""
    hidden, weight, t_hidden, t_weight, targets, _ = inputs(torch.float32)
    _, logp, logp_t, entropy = linear_token_divergence(hidden, weight, t_hidden, t_weight, targets,
                                                       kind="reverse_kl", top_k=top_k, vocab_size=34)
    lp = (hidden @ weight.T)[:, :34].log_softmax(-1).detach()
    lp_t = (t_hidden @ t_weight.T)[:, :34].log_softmax(-1)
    assert torch.equal(logp, lp.gather(-1, targets[:, None])[:, 0])
    assert torch.equal(logp_t, lp_t.gather(-1, targets[:, None])[:, 0])
    assert torch.equal(entropy, -(lp.exp() * lp).sum(-1))
