"""Per-token log-probabilities of the taken tokens without a full ``[B, T, V]`` fp32 log-softmax.

A 135M model with a 49,152-token vocabulary at batch 16 x 512 tokens would need 1.6 GB for fp32 logits
alone, and as much again for the log-softmax and its gradient. Here the model runs once keeping one position
(:func:`last_position`, so the causal-LM head produces one position only), the final hidden states are read
from ``output_hidden_states``, and the head is applied only at the wanted (completion) positions, chunk by
chunk, by :func:`runtime.ops.linear_token_logprobs`: each chunk's ``[chunk, V]`` logits are recomputed in the
backward pass with a closed-form gradient, so at most one chunk of logits is alive at a time; prompt
positions, most of a rollout row, cost no head at all.

The forward goes through the (possibly DDP-wrapped) model object itself, so that data-parallel gradient
synchronisation still happens.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from runtime.ops.token_logprobs import linear_token_logprobs

DEFAULT_CHUNK = 1024
# On a CPU, sequences up to this length run attention through SDPA's math backend (below).
CPU_MATH_ATTENTION_MAX_LEN = 1024


@dataclass
class TokenLogprobs:
    """Result of :func:`token_logprobs`.

    ``logprobs[b, t]`` is ``log pi(input_ids[b, t] | input_ids[b, :t])`` where ``completion_mask[b, t]`` is
    true and 0 elsewhere (shape ``[B, T]``, fp32). ``entropy[b, t]`` is the entropy (nats) of the
    next-token distribution that produced token ``t`` (same mask), or ``None`` when not asked for.
    """

    logprobs: torch.Tensor
    entropy: torch.Tensor | None


def pad_right(rows: list[list], value: float, *, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """``R`` ragged lists -> ``[R, max_len]`` tensor of ``dtype``, right-padded with ``value``."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=dtype)
    return out


def pad_token_id(tokenizer) -> int:
    """The id to pad rows with: the tokenizer's pad token, else its end-of-sequence token."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The underlying transformers model of a DDP/accelerate wrapper (for its head and config only)."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    completion_mask: torch.Tensor,
    *,
    chunk: int = DEFAULT_CHUNK,
    temperature: float = 1.0,
    with_entropy: bool = False,
    position_ids: torch.Tensor | None = None,
    compute_dtype: torch.dtype | None = None,
) -> TokenLogprobs:
    """Log-probs of the tokens in ``input_ids`` under ``model``, computed chunk-wise over the sequence.

    Args:
        model: a transformers causal LM (or a DDP/accelerate wrapper of one) whose logits are
            ``lm_head(last hidden state)`` (no final logit soft-capping).
        input_ids: ``[B, T]`` token ids (any padding side).
        attention_mask: ``[B, T]`` 1 for real tokens, 0 for padding; ``None`` for packed rows, whose
            sequence boundaries transformers then reads from ``position_ids`` (restarting at 0 per sample).
        completion_mask: ``[B, T]`` true at the positions whose log-prob is wanted (position 0 is ignored:
            it has no prefix).
        chunk: token positions per head evaluation; the logits of one evaluation take ``chunk * V * 4``
            bytes (fp32), about three times that in backward.
        temperature: logits are divided by it, matching a sampler run at that temperature (veRL convention).
        with_entropy: also return the per-token entropy (for the entropy bonus and metrics).
        position_ids: ``[B, T]`` explicit positions (packed rows); by default the model's own.
        compute_dtype: dtype of the head's GEMMs; ``None`` keeps the head weight's dtype (exact). The
            trainers pass the stage dtype, so under bf16 mixed precision the head runs in bf16 like the
            rest of the forward (autocast does not reach it here: it runs outside the model's ``forward``)
            and its logits are rounded to bf16 before the fp32 softmax, as in TRL and veRL.

    Returns:
        :class:`TokenLogprobs` with ``[B, T]`` tensors (fp32, or fp64 for an fp64 model), zero where
        ``completion_mask`` is false.

    Raises:
        ValueError: on shape mismatch, a non-positive chunk, or a model with logit soft-capping.
    """
    shapes = [t.shape for t in (input_ids, attention_mask, completion_mask, position_ids) if t is not None]
    if any(s != input_ids.shape for s in shapes):
        raise ValueError(
            f"input_ids, attention_mask, completion_mask and position_ids must have the same [B, T] shape, "
            f"got {[tuple(s) for s in shapes]}"
        )
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    inner = unwrap_model(model)
    if getattr(inner.config, "final_logit_softcapping", None):
        raise ValueError("token_logprobs does not support models with final logit soft-capping")
    head = inner.get_output_embeddings()

    kwargs = {"position_ids": position_ids} if position_ids is not None else {}
    with training_attention(input_ids):
        out = model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
            logits_to_keep=last_position(input_ids), use_cache=False, **kwargs,
        )
    # Position t predicts token t + 1. Only the wanted positions go through the head: prompt positions are
    # most of a rollout row and need no logits.
    wanted = completion_mask[:, 1:].to(torch.bool)
    hidden = out.hidden_states[-1][:, :-1][wanted]
    targets = input_ids[:, 1:][wanted]
    lp, ent = linear_token_logprobs(
        hidden, head.weight, targets, bias=head.bias, temperature=temperature, chunk=chunk,
        with_entropy=with_entropy, compute_dtype=compute_dtype or head.weight.dtype,
    )
    return TokenLogprobs(scatter_positions(wanted, lp), scatter_positions(wanted, ent) if with_entropy else None)


def last_position(input_ids: torch.Tensor) -> torch.Tensor:
    """``logits_to_keep`` for a forward over ``input_ids`` (``[B, T]``) that reads hidden states, not logits:
    the last position, as a 1-D index tensor.

    The int ``logits_to_keep=1`` gives the head ``hidden[:, -1:]``, a strided view; when no operand requires
    grad (a frozen teacher or reference) ``torch.matmul`` then expands the ``[V, H]`` head to ``[B, H, V]``
    instead of folding the batch into one GEMM. An index tensor gathers a contiguous ``[B, 1, H]``. Scoring
    32 rows of SmolLM2-135M with a frozen bf16 teacher on 2 CPU cores spent 5.4 s of 7.5 s in that copy (a
    ``[32, 576, 49152]`` tensor; issue 16).
    """
    return torch.tensor([input_ids.shape[-1] - 1], device=input_ids.device)


def training_attention(input_ids: torch.Tensor) -> contextlib.AbstractContextManager:
    """The attention kernel for a training or scoring forward over ``input_ids`` (``[B, T]``).

    On a CPU with ``T <= CPU_MATH_ATTENTION_MAX_LEN``, SDPA's math backend (matmul, softmax, matmul):
    PyTorch's CPU flash-attention backward is slow at short lengths. A GRPO update of 64 rows x 42 tokens
    of SmolLM2-135M on 2 cores took 4.9 s with it against 7.6 s with flash in bf16, 12.0 s against 19.2 s in
    fp32 (issue 16). Longer rows keep flash attention, whose memory does not grow with ``T**2``.
    """
    if input_ids.device.type == "cpu" and input_ids.shape[-1] <= CPU_MATH_ATTENTION_MAX_LEN:
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


def scatter_positions(wanted: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Per-position values of the ``wanted`` ``[B, T-1]`` positions -> ``[B, T]`` (column 0 and the rest 0)."""
    shifted = torch.zeros(wanted.shape, dtype=values.dtype, device=wanted.device).masked_scatter(wanted, values)
    return torch.nn.functional.pad(shifted, (1, 0))
