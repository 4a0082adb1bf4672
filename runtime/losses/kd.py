"""Offline distillation losses: cross-entropy on a teacher's tokens mixed with a top-k KD term.

Sources: knowledge distillation, Hinton et al. 2015 (soft targets at temperature ``T``; here the KL to the
teacher's distribution at ``T``); sequence-level KD, Kim & Rush 2016 (SFT on the teacher's own generations,
the cross-entropy term); top-k teacher distributions renormalised over the teacher's ``k`` most likely tokens,
as NeMo-RL's distillation does (``topk_logits_k``, paper-notes §3.5), so that only ``k`` ids and log-probs per
token need to be cached.

Shapes: ``B`` rows, ``T`` positions, ``k`` cached teacher tokens per position; position ``t`` holds the
prediction of target token ``t`` (the layout of :func:`runtime.logprobs.token_logprobs`).
"""

from __future__ import annotations

import torch


def topk_forward_kl(student_logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_logp: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """Per-position ``KL(P_T^k || P_S^k)`` over the teacher's top ``k`` tokens, both renormalised over them.

    Args:
        student_logits: ``[..., V]`` student logits (with gradient).
        teacher_ids: ``[..., k]`` the teacher's top-k token ids.
        teacher_logp: ``[..., k]`` the teacher's log-probs of those ids at ``temperature`` (any
            normalisation: they are renormalised over the k ids).
        temperature: the student's logits are divided by it, like the teacher's were.

    Returns:
        ``[...]`` non-negative divergences (nats).
    """
    # bf16 logits lose too much in a log-softmax: never compute below fp32
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    s = torch.log_softmax(student_logits.to(dtype).gather(-1, teacher_ids) / temperature, dim=-1)
    t = torch.log_softmax(teacher_logp.to(dtype), dim=-1)
    return (t.exp() * (t - s)).sum(-1)


def mixed_loss(ce_tokens: torch.Tensor, kd_tokens: torch.Tensor, mask: torch.Tensor, kd_weight: float,
               normaliser: float) -> torch.Tensor:
    """``sum_t m_t [(1 - w) CE_t + w KD_t] / N``: the CE/KD mix averaged over the step's ``N`` target tokens
    (every micro-batch and rank), so micro-batch losses add up to the step's loss.

    Args: ``ce_tokens``, ``kd_tokens`` and ``mask`` ``[B, T]``; ``kd_weight`` ``w`` in ``[0, 1]``.

    Raises:
        ValueError: ``kd_weight`` outside ``[0, 1]``.
    """
    if not 0.0 <= kd_weight <= 1.0:
        raise ValueError(f"kd_weight must lie in [0, 1], got {kd_weight}")
    m = mask.to(ce_tokens.dtype)
    per_token = (1.0 - kd_weight) * ce_tokens + kd_weight * kd_tokens
    return (per_token * m).sum() / max(float(normaliser), 1.0)
