"""runtime/ops/token_logprobs.py against autograd through log_softmax + gather (CPU; bf16 on CUDA)."""

from __future__ import annotations

import pytest
import torch

from runtime.ops.token_logprobs import linear_token_logprobs

torch.set_num_threads(2)


def naive(hidden, weight, bias, targets, temperature):
    z = torch.nn.functional.linear(hidden, weight, bias)
    z = z.to(torch.promote_types(z.dtype, torch.float32)) / temperature
    logp_all = torch.log_softmax(z, dim=-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp_all.gather(-1, targets[:, None]).squeeze(-1), entropy


def inputs(dtype, device="cpu", n=37, d=16, v=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=gen, dtype=torch.float64).to(device, dtype).requires_grad_()
    weight = torch.randn(v, d, generator=gen, dtype=torch.float64).to(device, dtype).requires_grad_()
    bias = torch.randn(v, generator=gen, dtype=torch.float64).to(device, dtype).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=gen).to(device)
    return hidden, weight, bias, targets


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("with_entropy", [False, True])
def test_values_and_gradients_match_autograd_in_float64(temperature, with_entropy):
    hidden, weight, bias, targets = inputs(torch.float64)
    logp, entropy = linear_token_logprobs(hidden, weight, targets, bias=bias, temperature=temperature, chunk=8,
                                          with_entropy=with_entropy)
    ref_logp, ref_entropy = naive(hidden, weight, bias, targets, temperature)
    assert logp.dtype == torch.float64, "an fp64 head must give fp64 statistics (gradient checks need them)"
    assert torch.allclose(logp, ref_logp, atol=1e-10)
    # Arbitrary upstream gradients, so every term of the closed-form backward is exercised.
    g1 = torch.linspace(-1, 2, len(targets), dtype=torch.float64)
    g2 = torch.linspace(0.5, -1.5, len(targets), dtype=torch.float64)
    loss = (logp * g1).sum() + ((entropy * g2).sum() if with_entropy else 0.0)
    ref_loss = (ref_logp * g1).sum() + ((ref_entropy * g2).sum() if with_entropy else 0.0)
    grads = torch.autograd.grad(loss, (hidden, weight, bias))
    ref_grads = torch.autograd.grad(ref_loss, (hidden, weight, bias))
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, atol=1e-10, rtol=1e-8), float((got - want).abs().max())
    if with_entropy:
        assert torch.allclose(entropy, ref_entropy, atol=1e-10)


def test_bf16_compute_is_close_to_fp32():
    hidden, weight, bias, targets = inputs(torch.float32, n=64, d=32, v=300)
    logp, _ = linear_token_logprobs(hidden, weight, targets, bias=bias, chunk=16, compute_dtype=torch.bfloat16)
    ref, _ = naive(hidden, weight, bias, targets, 1.0)
    assert (logp - ref).abs().mean() < 0.05
    logp.sum().backward()
    assert weight.grad.dtype == torch.float32 and torch.isfinite(weight.grad).all()


def test_bad_shapes_are_refused():
    hidden, weight, _, targets = inputs(torch.float32)
    with pytest.raises(ValueError, match=r"\[N\]"):
        linear_token_logprobs(hidden, weight, targets[:-1])
    with pytest.raises(ValueError, match="positive"):
        linear_token_logprobs(hidden, weight, targets, chunk=0)


def _cuda_peak_bytes(n: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Peak extra CUDA memory of a bf16 forward + backward over ``n`` rows (V = 32000, chunk 1024)."""
    hidden, weight, _, targets = inputs(torch.float32, device="cuda", n=n, d=256, v=32000)
    # Unit-variance logits, as a trained model's are: with N(0, 1) hidden states they would have a standard
    # deviation of 16, and bf16's 8-bit mantissa alone would put ~0.1 of error on every log-prob.
    hidden = (hidden.detach() / 16).requires_grad_()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    logp, _ = linear_token_logprobs(hidden, weight, targets, chunk=1024, compute_dtype=torch.bfloat16)
    logp.sum().backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    ref, _ = naive(hidden.detach(), weight.detach(), None, targets, 1.0)
    return peak, logp.detach(), ref


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_matches_and_memory_does_not_grow_with_logits():
    small, logp, ref = _cuda_peak_bytes(8192)
    assert (logp - ref).abs().mean() < 0.01, float((logp - ref).abs().mean())
    del logp, ref
    torch.cuda.empty_cache()
    large, _, _ = _cuda_peak_bytes(4 * 8192)
    # Full fp32 logits would grow by 3 x 8192 x 32000 x 4 bytes (3.1 GB); only [N] vectors and the [N, D]
    # hidden-state gradient may grow here (about 25 MB).
    grown_logits = 3 * 8192 * 32000 * 4
    assert large - small < grown_logits / 20, f"peak grew by {(large - small) / 2**20:.0f} MiB from 8k to 32k rows"


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_an_unused_entropy_changes_no_gradient(dtype):
    """Without an entropy term in the loss its output gets no gradient (None, not zeros): the gradients are
    those of the log-probs alone, bit for bit, as when the entropy is not asked for."""
    def grads(with_entropy):
        hidden, weight, bias, targets = inputs(torch.float32)
        logp, entropy = linear_token_logprobs(hidden, weight, targets, bias=bias, chunk=8, with_entropy=with_entropy,
                                              compute_dtype=dtype)
        return torch.autograd.grad((logp * torch.linspace(-1, 2, len(targets))).sum(), (hidden, weight, bias))

    for got, want in zip(grads(True), grads(False)):
        assert torch.equal(got, want)


def test_an_entropy_only_loss_matches_autograd():
    hidden, weight, bias, targets = inputs(torch.float64)
    _, entropy = linear_token_logprobs(hidden, weight, targets, bias=bias, chunk=8, with_entropy=True)
    _, ref = naive(hidden, weight, bias, targets, 1.0)
    got = torch.autograd.grad(entropy.sum(), (hidden, weight, bias))
    for g, want in zip(got, torch.autograd.grad(ref.sum(), (hidden, weight, bias))):
        assert torch.allclose(g, want, atol=1e-10, rtol=1e-8)
