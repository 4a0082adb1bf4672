"""Distillation losses: MOPD (Nemotron-Cascade 2 §4.4) and full-vocabulary / top-k KL (GKD).

Every tensor is aligned to the completion tokens of the student's own samples: position ``t`` of row ``b``
holds quantities about the sampled token ``y_t`` of sequence ``b`` given its prefix ``s_t = (x, y_<t)``.
``mask`` (``[B, T]``, bool or 0/1) marks the valid response tokens ``V(y)``; padding is ignored.

Both losses reduce the same way, as the MOPD objective does: a mean over the valid tokens of each sequence,
then a mean over the sequences that have at least one valid token (an empty completion has no tokens to
learn from and is left out rather than counted as a zero). A per-row weight ``c_b >= 0`` (a teacher route's
``weight``) multiplies row ``b``'s token mean; the divisor stays the count of non-empty sequences, not
``sum_b c_b`` (see :func:`sequence_token_mean`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

DivergenceKind = Literal["forward_kl", "reverse_kl", "jsd"]


@dataclass(frozen=True)
class MOPDLoss:
    """The MOPD surrogate loss and the per-token quantities behind it (all ``[B, T]`` except ``loss``).

    Attributes:
        loss: scalar to back-propagate.
        advantage: ``a_t = log pi_teacher(y_t|s_t) - log pi_train(y_t|s_t)``, detached, 0 on padding.
        ratio: ``r_t = pi_train(y_t|s_t) / pi_inf(y_t|s_t)``, detached, 1 on padding.
        weight: ``w_t = r_t * 1[eps_low <= r_t <= eps_high]``, 0 on padding and on gated tokens.
        gated: bool, true for valid tokens whose ratio fell outside the band (dropped from the loss).
    """

    loss: torch.Tensor
    advantage: torch.Tensor
    ratio: torch.Tensor
    weight: torch.Tensor
    gated: torch.Tensor


def sequence_token_mean(values: torch.Tensor, mask: torch.Tensor, num_sequences: float | None = None,
                        row_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over each sequence's valid tokens, then over sequences with at least one valid token:
    ``L = sum_b c_b * (sum_t m_bt v_bt / |m_b|) / N`` with ``N`` the count of non-empty sequences.

    ``c_b`` (``row_weights``, default 1) is the weight of row ``b``'s teacher route. ``N`` counts sequences,
    not ``sum_b c_b``, as reward route weights scale rewards: a route of weight 2 doubles its rows' gradient
    and a route of weight 0 removes its rows without raising the weight of the other rows, whichever routes a
    step happened to sample (a ``sum_b c_b`` divisor would make each row's weight depend on its batch, and
    divide by 0 when every row weighs 0).

    Args:
        values: ``[B, T]`` per-token values.
        mask: ``[B, T]`` valid-token mask (bool or 0/1).
        num_sequences: divide the sum of per-sequence means by this instead of the local count of non-empty
            sequences: the count of the whole step when a batch is split into micro-batches (and ranks), so
            that accumulated gradients equal those of one full batch.
        row_weights: ``[B]`` weights ``c_b >= 0`` of the rows (None: every row weighs 1).

    Returns:
        A scalar; 0 (with a gradient path) when no sequence has a valid token.
    """
    m = mask.to(values.dtype)
    n_tok = m.sum(dim=-1)
    per_seq = (values * m).sum(dim=-1) / n_tok.clamp(min=1.0)
    if row_weights is not None:
        per_seq = per_seq * row_weights.to(per_seq)
    has_tokens = (n_tok > 0).to(values.dtype)
    denom = has_tokens.sum().clamp(min=1.0) if num_sequences is None else max(float(num_sequences), 1.0)
    return (per_seq * has_tokens).sum() / denom


def mopd_loss(
    logp_train: torch.Tensor,
    logp_teacher: torch.Tensor,
    logp_inf: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.5,
    eps_high: float = 2.0,
    num_sequences: float | None = None,
    row_weights: torch.Tensor | None = None,
) -> MOPDLoss:
    """Multi-domain on-policy distillation loss (Nemotron-Cascade 2 §4.4; paper-notes §3.1).

    ``a_t = sg[log pi_teacher(y_t|s_t) - log pi_train(y_t|s_t)]``,
    ``r_t = pi_train(y_t|s_t) / pi_inf(y_t|s_t)``,
    ``w_t = sg[r_t] * 1[eps_low <= r_t <= eps_high]`` (a hard gate: tokens outside the band get weight 0,
    they are not clipped), and
    ``L = -(1/N) sum_b c_b sum_{t in V(y_b)} w_t a_t log pi_train(y_t|s_t) / |V(y_b)|``, ``N`` the count of
    non-empty sequences and ``c_b`` the weight of row ``b``'s teacher route (1 unless set; the
    normalisation is :func:`sequence_token_mean`'s).

    With ``w_t = 1`` the gradient of ``L`` is the per-token single-sample estimator of
    ``grad KL(pi_train || pi_teacher)`` with discount 0 (no credit for future tokens), so minimising ``L``
    pulls the student's reverse KL to each sample's teacher towards 0.

    Args:
        logp_train: ``[B, T]`` log-probs of the sampled tokens under the policy being trained (with grad).
        logp_teacher: ``[B, T]`` log-probs of the same tokens under each row's domain teacher.
        logp_inf: ``[B, T]`` log-probs under the inference policy that sampled them (the rollout engine).
        mask: ``[B, T]`` valid response tokens ``V(y)``.
        eps_low: lower edge of the importance-ratio band (paper: 0.5).
        eps_high: upper edge of the importance-ratio band (paper: 2.0).
        num_sequences: the step's count of non-empty sequences when this is one micro-batch of it
            (see :func:`sequence_token_mean`); default: this batch's own count.
        row_weights: ``[B]`` route weights ``c_b`` (None: all 1).

    Returns:
        A :class:`MOPDLoss`.

    Raises:
        ValueError: when the shapes differ or the band is empty.
    """
    if not (logp_train.shape == logp_teacher.shape == logp_inf.shape == mask.shape):
        raise ValueError(
            "mopd_loss needs equal [B, T] shapes, got "
            f"train {tuple(logp_train.shape)}, teacher {tuple(logp_teacher.shape)}, "
            f"inf {tuple(logp_inf.shape)}, mask {tuple(mask.shape)}"
        )
    if not 0.0 <= eps_low <= eps_high:
        raise ValueError(f"importance-ratio band must satisfy 0 <= eps_low <= eps_high, got ({eps_low}, {eps_high})")
    valid = mask.bool()
    lp = logp_train.detach()
    # Padding may hold -inf or garbage; zero it before exp/subtraction so no NaN leaks into the gradient.
    advantage = torch.where(valid, logp_teacher.detach() - lp, torch.zeros_like(lp))
    ratio = torch.where(valid, torch.exp(lp - logp_inf.detach()), torch.ones_like(lp))
    in_band = (ratio >= eps_low) & (ratio <= eps_high)
    weight = torch.where(valid & in_band, ratio, torch.zeros_like(ratio))
    safe_logp = torch.where(valid, logp_train, torch.zeros_like(logp_train))
    loss = -sequence_token_mean(weight * advantage * safe_logp, valid, num_sequences, row_weights)
    return MOPDLoss(loss=loss, advantage=advantage, ratio=ratio, weight=weight, gated=valid & ~in_band)


def reverse_kl_estimate(logp_train: torch.Tensor, logp_teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token reverse-KL estimate ``mean_t (log pi_train(y_t) - log pi_teacher(y_t))`` over valid tokens.

    For tokens sampled from ``pi_train`` this is an unbiased estimate of the per-token
    ``KL(pi_train || pi_teacher)`` (the ``k1`` estimator; it equals ``mean(-a_t)`` of :func:`mopd_loss`).

    Args:
        logp_train: ``[B, T]`` student log-probs of the sampled tokens.
        logp_teacher: ``[B, T]`` teacher log-probs of the same tokens.
        mask: ``[B, T]`` valid tokens.

    Returns:
        A detached scalar (nats per token); 0 when there is no valid token.
    """
    valid = mask.bool()
    diff = torch.where(valid, logp_train.detach() - logp_teacher.detach(), torch.zeros_like(logp_train))
    return diff.sum() / valid.sum().clamp(min=1)


def restrict_logprobs(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, vocab_size: int | None, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of student and teacher over their shared vocabulary, or over the teacher's top-k tokens."""
    v = min(student_logits.shape[-1], teacher_logits.shape[-1])
    if vocab_size is not None:
        v = min(v, vocab_size)
    # bf16 logits lose too much in log_softmax over a large vocabulary; never compute below fp32
    s = student_logits[..., :v].to(torch.promote_types(student_logits.dtype, torch.float32))
    t = teacher_logits[..., :v].to(torch.promote_types(teacher_logits.dtype, torch.float32))
    if top_k > 0 and top_k < v:
        idx = t.topk(top_k, dim=-1).indices
        s = s.gather(-1, idx)
        t = t.gather(-1, idx)
    return F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1)


def token_divergence(
    student_logp: torch.Tensor, teacher_logp: torch.Tensor, kind: DivergenceKind, beta: float = 0.5
) -> torch.Tensor:
    """Per-position divergence between two distributions given as log-probs ``[..., V]`` -> ``[...]``.

    - ``forward_kl``: ``KL(P_T || P_S) = sum_v P_T (log P_T - log P_S)`` (mode covering).
    - ``reverse_kl``: ``KL(P_S || P_T) = sum_v P_S (log P_S - log P_T)`` (mode seeking).
    - ``jsd``: the generalised Jensen-Shannon divergence of GKD (Agarwal et al. 2024, Eq. 1),
      ``JSD(beta) = beta KL(P_T || M) + (1 - beta) KL(P_S || M)`` with ``M = beta P_T + (1 - beta) P_S``;
      ``beta`` must lie strictly between 0 and 1 (the endpoints are the two KLs above, as in TRL's
      ``generalized_jsd_loss``).

    Raises:
        ValueError: for an unknown ``kind`` or a ``beta`` outside ``(0, 1)`` with ``jsd``.
    """
    if kind == "forward_kl":
        return (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)
    if kind == "reverse_kl":
        return (student_logp.exp() * (student_logp - teacher_logp)).sum(-1)
    if kind == "jsd":
        if not 0.0 < beta < 1.0:
            raise ValueError(f"jsd needs 0 < beta < 1, got {beta} (use forward_kl or reverse_kl for the endpoints)")
        log_m = torch.logaddexp(teacher_logp + math.log(beta), student_logp + math.log1p(-beta))
        kl_t = (teacher_logp.exp() * (teacher_logp - log_m)).sum(-1)
        kl_s = (student_logp.exp() * (student_logp - log_m)).sum(-1)
        return beta * kl_t + (1.0 - beta) * kl_s
    raise ValueError(f"unknown divergence {kind!r}; expected forward_kl, reverse_kl or jsd")


def logit_distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    kind: DivergenceKind,
    beta: float = 0.5,
    top_k: int = 0,
    vocab_size: int | None = None,
    num_sequences: float | None = None,
    row_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GKD-style distillation loss over the full vocabulary (or the teacher's top-k) on student samples.

    The positions are those of the student's own sampled completions (on-policy, GKD with ``lambda = 1``);
    the divergence at each position compares the whole next-token distributions, not only the sampled token.

    Args:
        student_logits: ``[B, T, V_s]`` student logits at the completion positions (with grad).
        teacher_logits: ``[B, T, V_t]`` teacher logits at the same positions. ``V_s`` and ``V_t`` may differ
            when one model pads its embedding; both are cut to the shared range (and to ``vocab_size`` if
            given: the tokenizer's vocabulary, beyond which rows are padding).
        mask: ``[B, T]`` valid tokens.
        kind: ``forward_kl``, ``reverse_kl`` or ``jsd`` (see :func:`token_divergence`).
        beta: the JSD interpolation coefficient.
        top_k: when > 0, both distributions are renormalised over the teacher's ``top_k`` tokens at each
            position (as NeMo-RL's top-k distillation does), which bounds memory for large vocabularies.
        vocab_size: the tokenizer's vocabulary size, if known.
        num_sequences: the step's count of non-empty sequences for micro-batches (see
            :func:`sequence_token_mean`).
        row_weights: ``[B]`` teacher route weights ``c_b`` multiplying each row's token mean (None: all 1).

    Returns:
        ``(loss, per_token)``: the scalar loss (per-sequence token mean times ``c_b``, summed, over the count
        of non-empty sequences) and the
        detached ``[B, T]`` divergence (0 on padding).
    """
    s, t = restrict_logprobs(student_logits, teacher_logits.detach(), vocab_size, top_k)
    div = token_divergence(s, t, kind, beta)
    valid = mask.bool()
    div = torch.where(valid, div, torch.zeros_like(div))
    return sequence_token_mean(div, valid, num_sequences, row_weights), div.detach()
