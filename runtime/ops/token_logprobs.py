"""Log-probabilities (and entropies) of chosen tokens straight from hidden states, chunked over tokens,
with a hand-written backward that never keeps ``[N, V]`` logits.

For a policy-gradient or distillation loss only ``log softmax(h W^T / T)[y]`` of the taken token ``y`` is
needed per position (and the entropy for metrics or a bonus). Computing it with autograd over the head
(``F.linear`` -> ``log_softmax`` -> ``gather``) keeps fp32 logits of every position for backward, and
``gather``'s backward scatters into a zero tensor of the same size. Profiled on an H200 (GRPO step, 128
rows x 329 tokens, 49,152-token vocabulary; bench/results/gpu-vs-trl.md), the head under that pattern cost
0.16 s of fp32 GEMMs (it ran outside accelerate's autocast) and 0.06 s of ``GatherBackward``, and the fp32
logits chunks set the step's 52 GiB peak.

:func:`linear_token_logprobs` takes the ``[N, D]`` hidden states of the positions that matter (pack them
first: completion tokens only, no padding), runs the head ``chunk`` tokens at a time in ``compute_dtype``
(bf16 on GPU), keeps only ``[N]`` vectors, and recomputes each chunk's logits in backward, where the
gradient of the logits is closed-form:

    d logp_y / d z = onehot(y) - p                      (softmax cross-entropy)
    d H / d z      = -p * (log p + H)                   (H = -sum p log p)

with ``z = logits / T`` and ``p = softmax(z)``, then chained through ``/ T`` and the linear map. Peak extra
memory is one chunk's logits (``chunk * V * 4`` bytes, 0.8 GB at 4,096 x 49,152) instead of all of them.
Up to ``KEEP_LOGITS_ELEMENTS`` ``[N, V]`` elements in all (128 MiB of fp32: a CPU step of 512 completion tokens
at a 49,152-token vocabulary) the forward's fp32 logits are kept for backward instead: the same values, without
a second pass of the head's GEMM.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK = 4096
# Up to this many [N, V] elements the forward's logits are kept for backward (4 bytes each).
KEEP_LOGITS_ELEMENTS = 2 ** 25


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype,
            temperature: float) -> torch.Tensor:
    z = torch.nn.functional.linear(hidden.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype))
    z = z.to(_stats_dtype(dtype))
    return z / temperature if temperature != 1.0 else z


def _stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax statistics run in fp32, or fp64 when the head computes in fp64 (gradient checks)."""
    return torch.promote_types(dtype, torch.float32)


class _LinearTokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, chunk, with_entropy, dtype):
        n, stats = hidden.shape[0], _stats_dtype(dtype)
        logp = hidden.new_empty(n, dtype=stats)
        entropy = hidden.new_zeros(n, dtype=stats)
        lse = hidden.new_empty(n, dtype=stats)
        keep = any(ctx.needs_input_grad[:3]) and n * weight.shape[0] <= KEEP_LOGITS_ELEMENTS
        ctx.logits = []
        with torch.autocast(hidden.device.type, enabled=False):
            head = weight.to(dtype)  # cast once, not once per chunk
            for start in range(0, n, chunk):
                sl = slice(start, start + chunk)
                z = _logits(hidden[sl], head, bias, dtype, temperature)
                if keep:
                    ctx.logits.append(z)
                lse[sl] = torch.logsumexp(z, dim=-1)
                logp[sl] = z.gather(-1, targets[sl, None]).squeeze(-1) - lse[sl]
                if with_entropy:
                    entropy[sl] = lse[sl] - (torch.softmax(z, dim=-1) * z).sum(-1)
        ctx.save_for_backward(hidden, weight, bias, targets, lse, entropy)
        ctx.settings = (temperature, chunk, with_entropy, dtype)
        # An output that no loss term uses (the entropy, a metric unless there is an entropy bonus) gets None
        # in backward instead of a zero tensor, so its [chunk, V] gradient terms are not computed at all.
        ctx.set_materialize_grads(False)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        hidden, weight, bias, targets, lse, entropy = ctx.saved_tensors
        temperature, chunk, with_entropy, dtype = ctx.settings
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        stats = _stats_dtype(dtype)
        grad_weight = torch.zeros(weight.shape, dtype=stats, device=weight.device) \
            if ctx.needs_input_grad[1] else None
        grad_bias = torch.zeros(bias.shape, dtype=stats, device=bias.device) \
            if bias is not None and ctx.needs_input_grad[2] else None
        use_entropy = with_entropy and grad_entropy is not None
        kept, ctx.logits = ctx.logits, []
        with torch.autocast(hidden.device.type, enabled=False):
            head = weight.to(dtype)
            for k, start in enumerate(range(0, hidden.shape[0], chunk)):
                sl = slice(start, start + chunk)
                z = kept[k] if kept else _logits(hidden[sl], head, bias, dtype, temperature)
                logp_all = z - lse[sl, None]
                p = logp_all.exp()
                if grad_logp is not None:
                    grad_z = p * -grad_logp[sl, None]  # = -p * g exactly, one pass over [chunk, V] less
                    grad_z.scatter_add_(-1, targets[sl, None], grad_logp[sl, None])
                else:
                    grad_z = torch.zeros_like(z)
                if use_entropy:
                    grad_z -= grad_entropy[sl, None] * p * (logp_all + entropy[sl, None])
                if temperature != 1.0:
                    grad_z = grad_z / temperature
                grad_z = grad_z.to(dtype)
                if grad_hidden is not None:
                    grad_hidden[sl] = (grad_z @ head).to(hidden.dtype)
                if grad_weight is not None:
                    grad_weight += (grad_z.t() @ hidden[sl].to(dtype)).to(stats)
                if grad_bias is not None:
                    grad_bias += grad_z.to(stats).sum(0)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        if grad_bias is not None:
            grad_bias = grad_bias.to(bias.dtype)
        return grad_hidden, grad_weight, grad_bias, None, None, None, None, None


def linear_token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk: int = DEFAULT_CHUNK,
    with_entropy: bool = False,
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log softmax(hidden @ weight.T + bias) / temperature)[targets]`` per row, and optionally the entropy.

    Args:
        hidden: ``[N, D]`` final hidden states (after the last norm), one row per scored position.
        weight: ``[V, D]`` output head (``model.get_output_embeddings().weight``; tied or not).
        targets: ``[N]`` int64 token ids (the token each row predicts).
        bias: optional ``[V]`` head bias.
        temperature: logits are divided by it (the sampler's temperature; > 0).
        chunk: rows per head evaluation; memory is about ``chunk * V * 12`` bytes in backward.
        with_entropy: also return the entropy (nats) of each row's distribution, differentiable.
        compute_dtype: dtype of the head's GEMMs (bf16 on GPU; default ``hidden.dtype``); softmax,
            log-sum-exp and the returned values are fp32 (fp64 when ``compute_dtype`` is fp64).

    Returns:
        ``(logprobs [N], entropy [N] or None)``, fp32 (fp64 for an fp64 ``compute_dtype``); gradients flow to ``hidden``, ``weight`` and
        ``bias`` (closed-form softmax gradients, see the module docstring).

    Raises:
        ValueError: on shape mismatch, a non-positive ``chunk`` or ``temperature``.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} must be [N, D] and weight {tuple(weight.shape)} [V, D]")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets {tuple(targets.shape)} must be [N] with N = {hidden.shape[0]}")
    if chunk <= 0 or temperature <= 0:
        raise ValueError(f"chunk ({chunk}) and temperature ({temperature}) must be positive")
    dtype = compute_dtype or hidden.dtype
    logp, entropy = _LinearTokenLogprobs.apply(hidden, weight, bias, targets, float(temperature), int(chunk),
                                               bool(with_entropy), dtype)
    return logp, (entropy if with_entropy else None)
