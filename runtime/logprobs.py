"""Per-token log-probabilities of the taken tokens without a full ``[B, T, V]`` fp32 log-softmax.

A 135M model with a 49,152-token vocabulary at batch 16 x 512 tokens would need 1.6 GB for fp32 logits
alone, and as much again for the log-softmax and its gradient. Here the model runs once with
``logits_to_keep=1`` (so the causal-LM head produces one position only), the final hidden states are read
from ``output_hidden_states``, and the head is applied only at the wanted (completion) positions, chunk by
chunk. Each chunk's ``[chunk, V]`` logits are recomputed in the backward pass (activation checkpointing), so
at most one chunk of logits is alive at a time; prompt positions, most of a rollout row, cost no head at all.

The forward goes through the (possibly DDP-wrapped) model object itself, so that data-parallel gradient
synchronisation still happens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK = 1024


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


def _chunk_stats(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
    temperature: float, with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of ``targets`` and entropy for one chunk: hidden ``[B, c, H]`` -> two ``[B, c]`` fp32."""
    # Under autocast the hidden states and the head's weights can differ in dtype (fp32 residual stream,
    # bf16 weights or the reverse); the head runs in the weights' dtype.
    logits = torch.nn.functional.linear(hidden.to(weight.dtype), weight, bias)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1)
    taken = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy:
        return taken, torch.zeros_like(taken)
    probs = torch.softmax(logits, dim=-1)
    entropy = lse - (probs * logits).sum(-1)
    return taken, entropy


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
            bytes (fp32).
        temperature: logits are divided by it, matching a sampler run at that temperature (veRL convention).
        with_entropy: also return the per-token entropy (for the entropy bonus and metrics).
        position_ids: ``[B, T]`` explicit positions (packed rows); by default the model's own.

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
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
        logits_to_keep=1, use_cache=False, **kwargs,
    )
    # Position t predicts token t + 1. Only the wanted positions go through the head: prompt positions are
    # most of a rollout row and need no logits.
    wanted = completion_mask[:, 1:].to(torch.bool)
    hidden = out.hidden_states[-1][:, :-1][wanted]
    targets = input_ids[:, 1:][wanted]
    lp_parts, ent_parts = [], []
    recompute = torch.is_grad_enabled() and hidden.requires_grad
    for start in range(0, hidden.shape[0], chunk):
        h = hidden[start:start + chunk]
        y = targets[start:start + chunk]
        if recompute:
            lp, ent = checkpoint(
                _chunk_stats, h, head.weight, head.bias, y, temperature, with_entropy, use_reentrant=False
            )
        else:
            lp, ent = _chunk_stats(h, head.weight, head.bias, y, temperature, with_entropy)
        lp_parts.append(lp)
        ent_parts.append(ent)
    dtype = torch.promote_types(out.hidden_states[-1].dtype, torch.float32)
    lp_full = _scatter(wanted, lp_parts, dtype)
    ent_full = _scatter(wanted, ent_parts, dtype) if with_entropy else None
    return TokenLogprobs(lp_full, ent_full)


def _scatter(wanted: torch.Tensor, parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """Per-position values of the ``wanted`` ``[B, T-1]`` positions -> ``[B, T]`` (column 0 and the rest 0)."""
    values = torch.cat(parts) if parts else torch.zeros(0, dtype=dtype, device=wanted.device)
    shifted = torch.zeros(wanted.shape, dtype=values.dtype, device=wanted.device).masked_scatter(wanted, values)
    return torch.nn.functional.pad(shifted, (1, 0))
