"""Full-vocabulary divergences between a student and a teacher straight from hidden states, chunked over
tokens, for the logit-distillation losses (reverse KL, forward KL, JSD; ``runtime.losses.distill``).

Computing them from ``[R, T, V]`` logits of both models keeps the student's logits (and their softmax) for
backward and holds the teacher's in fp32: on the 135M shape at 32 rows x 329 positions that is several
GB per micro-batch, most of it at prompt positions that carry no loss. :func:`linear_token_divergence`
takes the ``[N, D]`` final hidden states of the completion positions only (student and teacher), applies each
head ``chunk`` tokens at a time in ``compute_dtype`` (bf16 on GPU), and keeps only ``[N]`` vectors. Backward
recomputes one chunk's logits at a time and differentiates that chunk's divergence through autograd
(activation checkpointing of the head and the loss, per chunk), so peak memory is one chunk's logits and
the math is exactly :func:`runtime.losses.distill.token_divergence` over
:func:`runtime.losses.distill.restrict_logprobs` (shared vocabulary, optional teacher top-k). A batch of at
most ``KEEP_GRAPH_ELEMENTS`` ``[N, V]`` elements (a CPU micro-batch: 16 rows x 8 tokens at a 49,152-token
vocabulary) keeps the forward's graph instead, the same operations on the same values: recomputing both heads
and both log-softmaxes cost 4-14% of a 4-row distillation update on 2 CPU cores (bench/results/cpu-step-ab.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from runtime.losses.distill import DivergenceKind, restrict_logprobs, token_divergence

DEFAULT_DIVERGENCE_CHUNK = 1024
# Up to this many [N, V] elements the forward keeps its autograd graph (about 24 bytes an element: logits,
# log-probs and the divergence's terms; 200 MB) for backward, which then recomputes neither head.
KEEP_GRAPH_ELEMENTS = 2 ** 23


@dataclass(frozen=True)
class _Settings:
    kind: str
    beta: float
    top_k: int
    vocab_size: int | None
    temperature: float
    teacher_temperature: float
    chunk: int
    dtype: torch.dtype


def _logits(hidden: torch.Tensor, weight: torch.Tensor, s: _Settings, temperature: float) -> torch.Tensor:
    z = torch.nn.functional.linear(hidden.to(s.dtype), weight.to(s.dtype))
    z = z.to(torch.promote_types(s.dtype, torch.float32))
    return z / temperature if temperature != 1.0 else z


def _chunk(hidden, weight, t_hidden, t_weight, s: _Settings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One chunk's divergence ``[n]`` and the student's and teacher's log-probs ``[n, V]`` over the shared
    vocabulary (the sampled token's log-prob and the entropy are read from them)."""
    z = _logits(hidden, weight, s, s.temperature)
    with torch.no_grad():
        zt = _logits(t_hidden, t_weight, s, s.teacher_temperature)
    v = min(z.shape[-1], zt.shape[-1], s.vocab_size or z.shape[-1])
    student, teacher = restrict_logprobs(z, zt, s.vocab_size, s.top_k)
    div = token_divergence(student, teacher, s.kind, s.beta)
    if s.top_k > 0 and s.top_k < v:  # the divergence is over the teacher's top k; the metrics are not
        with torch.no_grad():
            student, teacher = z[:, :v].log_softmax(-1), zt[:, :v].log_softmax(-1)
    return div, student, teacher


class _LinearTokenDivergence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, t_hidden, t_weight, targets, settings):
        s, n = settings, hidden.shape[0]
        stats = torch.promote_types(s.dtype, torch.float32)
        div, logp, logp_t, entropy = (hidden.new_zeros(n, dtype=stats) for _ in range(4))
        # A small batch keeps its autograd graph from here for backward instead of recomputing both heads there.
        keep = any(ctx.needs_input_grad[:2]) and n * max(weight.shape[0], t_weight.shape[0]) <= KEEP_GRAPH_ELEMENTS
        w = weight.detach().requires_grad_(ctx.needs_input_grad[1]) if keep else weight
        ctx.kept = []
        with torch.autocast(hidden.device.type, enabled=False), torch.set_grad_enabled(keep):
            for start in range(0, n, s.chunk):
                sl = slice(start, start + s.chunk)
                h = hidden[sl].detach().requires_grad_(ctx.needs_input_grad[0]) if keep else hidden[sl]
                part, lp, lp_t = _chunk(h, w, t_hidden[sl], t_weight, s)
                if keep:
                    ctx.kept.append((part, h, w))
                div[sl] = part.detach()
                lp, lp_t = lp.detach(), lp_t.detach()
                logp[sl] = lp.gather(-1, targets[sl, None]).squeeze(-1)
                logp_t[sl] = lp_t.gather(-1, targets[sl, None]).squeeze(-1)
                entropy[sl] = -(lp.exp() * lp).sum(-1)
        ctx.save_for_backward(hidden, weight, t_hidden, t_weight)
        ctx.settings = s
        ctx.mark_non_differentiable(logp, logp_t, entropy)
        return div, logp, logp_t, entropy

    @staticmethod
    def backward(ctx, grad_div, *_):
        hidden, weight, t_hidden, t_weight = ctx.saved_tensors
        s = ctx.settings
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.promote_types(weight.dtype, torch.float32)) \
            if ctx.needs_input_grad[1] else None
        kept, ctx.kept = ctx.kept, []
        w = weight.detach().requires_grad_(grad_weight is not None)
        with torch.autocast(hidden.device.type, enabled=False), torch.enable_grad():
            for k, start in enumerate(range(0, hidden.shape[0], s.chunk)):
                sl = slice(start, start + s.chunk)
                if kept:
                    div, h, w = kept[k]
                else:
                    h = hidden[sl].detach().requires_grad_(grad_hidden is not None)
                    div = _chunk(h, w, t_hidden[sl], t_weight, s)[0]
                wrt = [x for x in (h, w) if x.requires_grad]
                grads = iter(torch.autograd.grad(div, wrt, grad_outputs=grad_div[sl]))
                if grad_hidden is not None:
                    grad_hidden[sl] = next(grads)
                if grad_weight is not None:
                    grad_weight += next(grads)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


def linear_token_divergence(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    kind: DivergenceKind,
    beta: float = 0.5,
    top_k: int = 0,
    vocab_size: int | None = None,
    temperature: float = 1.0,
    teacher_temperature: float | None = None,
    chunk: int = DEFAULT_DIVERGENCE_CHUNK,
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token divergence between ``softmax(hidden W^T / T)`` and ``softmax(teacher_hidden W_t^T / T)``.

    Args:
        hidden: ``[N, D]`` student final hidden states (after the last norm), one row per scored position.
        weight: ``[V, D]`` student output head (no bias: Llama-family heads have none).
        teacher_hidden: ``[N, D_t]`` teacher final hidden states at the same positions (no gradient).
        teacher_weight: ``[V_t, D_t]`` teacher output head.
        targets: ``[N]`` int64, the sampled token of each position (for the log-prob metrics only).
        kind, beta, top_k, vocab_size: as :func:`runtime.losses.distill.logit_distill_loss`.
        temperature: the student's logits are divided by it (> 0).
        teacher_temperature: the teacher's logits are divided by it (> 0; default ``temperature``).
        chunk: positions per head evaluation; backward holds about ``chunk * V * 24`` bytes (the whole
            batch's, ``N * V * 24``, from forward to backward up to ``KEEP_GRAPH_ELEMENTS``).
        compute_dtype: dtype of both heads' GEMMs (default ``hidden.dtype``); softmax statistics in fp32
            (fp64 for an fp64 ``compute_dtype``).

    Returns:
        ``(divergence, logp, logp_teacher, entropy)``, each ``[N]``: the divergence (differentiable with
        respect to ``hidden`` and ``weight``), and, detached, the sampled token's log-prob under each
        model and the student's entropy, all over the shared vocabulary.

    Raises:
        ValueError: on shape mismatch, a non-positive ``chunk`` or ``temperature``, or a top-k or vocabulary
            restriction that :func:`runtime.losses.distill.token_divergence` refuses.
    """
    n = hidden.shape[0]
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} must be [N, D] and weight {tuple(weight.shape)} [V, D]")
    if teacher_hidden.shape[0] != n or teacher_hidden.shape[1] != teacher_weight.shape[1] or targets.shape != (n,):
        raise ValueError(f"teacher_hidden {tuple(teacher_hidden.shape)}, teacher_weight "
                         f"{tuple(teacher_weight.shape)} and targets {tuple(targets.shape)} must match N = {n}")
    teacher_temperature = temperature if teacher_temperature is None else teacher_temperature
    if chunk <= 0 or temperature <= 0 or teacher_temperature <= 0:
        raise ValueError(f"chunk ({chunk}), temperature ({temperature}) and teacher temperature "
                         f"({teacher_temperature}) must be positive")
    settings = _Settings(kind, float(beta), int(top_k), vocab_size, float(temperature), float(teacher_temperature),
                         int(chunk), compute_dtype or hidden.dtype)
    return _LinearTokenDivergence.apply(hidden, weight, teacher_hidden.detach(), teacher_weight.detach(), targets,
                                        settings)
