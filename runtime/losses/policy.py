"""The policy-gradient loss of the ``grpo`` stage: clipped importance ratio, rollout/trainer correction, KL,
entropy and loss aggregation, each a small function with its source.

Every function is elementwise over token tensors of any one shape (``[N, T]`` right-padded rows, or
``[R, T]`` packed rows holding several rollouts each); what ties a token to its rollout is carried by
per-token tensors (the rollout's advantage, the rollout's token count), never by the row layout, so packed
and padded batches give the same loss. Tokens that do not count (prompt, padding, filtered rollouts) have
aggregation weight 0.

Notation: ``logp`` = log pi_theta of the sampled token (with gradient), ``old`` = log pi_old (the trainer's
log-prob before the first update on this rollout batch, detached), ``inf`` = log pi_inf (the rollout
engine's log-prob, detached), ``ref`` = log pi_ref (frozen reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Aggregation = Literal["token_mean", "seq_mean_token_sum", "seq_mean_token_mean"]
AGGREGATIONS = ("token_mean", "seq_mean_token_sum", "seq_mean_token_mean")
KLEstimator = Literal["k1", "k2", "k3"]
ISCorrection = Literal["none", "tis", "icepop"]


def aggregation_weights(mask: torch.Tensor, seq_tokens: torch.Tensor, mode: Aggregation, normaliser: float) -> torch.Tensor:
    """Per-token weights ``w`` such that the aggregated loss is ``sum(w * loss_token)`` (veRL's ``agg_loss``).

    - ``token_mean`` (DAPO, arXiv 2503.14476, Eq. 8; the Cascade papers): ``w = m / N_tokens``, every token
      of the batch counts the same.
    - ``seq_mean_token_sum`` (Dr. GRPO, Liu et al. 2025, Eq. 3 without the ``1/|o_i|``): ``w = m / N_seqs``,
      each rollout contributes the sum over its tokens.
    - ``seq_mean_token_mean`` (GRPO, Shao et al. 2024, Eq. 3): ``w = m / (|o_i| N_seqs)``, each rollout
      contributes the mean over its tokens.

    Args:
        mask: ``[...]`` 1 on counted tokens.
        seq_tokens: ``[...]`` the counted-token count ``|o_i|`` of the rollout each position belongs to
            (any value where ``mask`` is 0).
        normaliser: ``N_tokens`` for ``token_mean``, ``N_seqs`` (rollouts with at least one counted token)
            otherwise, over the whole mini-batch: every micro-batch and rank of one optimizer step.

    Raises:
        ValueError: an unknown mode.
    """
    m = mask.to(torch.float32) if not mask.is_floating_point() else mask
    denom = max(float(normaliser), 1.0)
    if mode in ("token_mean", "seq_mean_token_sum"):
        return m / denom
    if mode == "seq_mean_token_mean":
        return m / seq_tokens.to(m.dtype).clamp(min=1.0) / denom
    raise ValueError(f"unknown loss aggregation {mode!r} (expected one of {', '.join(AGGREGATIONS)})")


def kl_estimate(logp: torch.Tensor, ref: torch.Tensor, kind: KLEstimator) -> torch.Tensor:
    """Per-token estimators of KL(pi_theta || pi_ref) on tokens sampled from pi_theta (J. Schulman,
    "Approximating KL divergence", 2020), with ``log_r = ref - logp``:

    - ``k1 = -log_r`` (unbiased, high variance, can be negative);
    - ``k2 = (log_r)^2 / 2`` (biased, low variance, non-negative);
    - ``k3 = exp(log_r) - 1 - log_r`` (unbiased, low variance, non-negative; the GRPO paper's KL term).

    Raises:
        ValueError: an unknown estimator.
    """
    log_r = ref - logp
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r * log_r
    if kind == "k3":
        return torch.exp(log_r) - 1.0 - log_r
    raise ValueError(f"unknown KL estimator {kind!r} (expected k1, k2 or k3)")


def kl_in_reward(rewards: torch.Tensor, kl_tokens: torch.Tensor, mask: torch.Tensor, coef: float) -> torch.Tensor:
    """Outcome rewards with the KL penalty folded in: ``r_i - coef * sum_t KL_it`` (``[N]``; ``kl_tokens`` and
    ``mask`` ``[N, T]``), the "KL in the reward" placement of InstructGPT (Ouyang et al. 2022, Eq. 2) as
    veRL's ``use_kl_in_reward`` applies it before an outcome estimator sums the token rewards. Detached: the
    penalty shapes the advantage, it is not differentiated through."""
    return rewards - coef * (kl_tokens.detach() * mask.to(kl_tokens.dtype)).sum(dim=-1)


def clipped_surrogate(
    ratio: torch.Tensor,
    adv: torch.Tensor,
    *,
    clip_low: float | None,
    clip_high: float | None,
    dual_clip: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO loss ``-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)`` and where clipping is active.

    Sources: PPO (Schulman et al. 2017, Eq. 7); separate ``eps_low``/``eps_high`` ("clip-higher") from DAPO
    (arXiv 2503.14476, Eq. 10); the dual clip from Ye et al. 2020 ("Mastering Complex Control in MOBA Games",
    Eq. 5): for ``A < 0`` the loss is capped at ``-c A`` (``c > 1``), so a huge ratio on a bad token cannot
    blow up the update. ``None`` disables each bound.

    Args: ``ratio`` and ``adv`` of one shape. Returns ``(loss, clipped)``, ``clipped`` a bool tensor.
    """
    surr = ratio * adv
    lo = 1.0 - clip_low if clip_low is not None else None
    hi = 1.0 + clip_high if clip_high is not None else None
    if lo is None and hi is None:
        loss, clipped = -surr, torch.zeros_like(ratio, dtype=torch.bool)
    else:
        clipped_ratio = ratio.clamp(min=lo, max=hi)
        surr2 = clipped_ratio * adv
        loss = -torch.minimum(surr, surr2)
        clipped = (surr2 < surr).detach()
    if dual_clip is not None:
        capped = torch.minimum(loss, -dual_clip * adv)
        clipped = clipped | ((adv < 0) & (capped < loss)).detach()
        loss = torch.where(adv < 0, capped, loss)
    return loss, clipped


def is_correction(old: torch.Tensor, inf: torch.Tensor, mode: ISCorrection, band: tuple[float, float]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Detached per-token weight correcting for the rollout engine sampling from pi_inf != pi_old.

    - ``none``: 1 (strict on-policy: the engine samples exactly from the trained weights).
    - ``tis`` (truncated IS; F. Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy
      RL Training"): ``w = min(pi_old / pi_inf, band[1])``; ``band[0]`` is unused.
    - ``icepop`` (masked IS; IcePop, Ling Team 2025, arXiv 2510.18855, Eq. 4; the MOPD gate of
      Nemotron-Cascade 2 §4.4): ``w = (pi_old / pi_inf) * 1[band[0] <= pi_old / pi_inf <= band[1]]``.

    Returns ``(weight, outside)``: ``outside`` marks tokens truncated (``tis``) or masked (``icepop``).

    Raises:
        ValueError: an unknown mode.
    """
    if mode == "none":
        ones = torch.ones_like(old)
        return ones, torch.zeros_like(old, dtype=torch.bool)
    ratio = torch.exp(old.detach() - inf.detach())
    if mode == "tis":
        return ratio.clamp(max=band[1]), ratio > band[1]
    if mode == "icepop":
        inside = (ratio >= band[0]) & (ratio <= band[1])
        return torch.where(inside, ratio, torch.zeros_like(ratio)), ~inside
    raise ValueError(f"unknown importance-sampling correction {mode!r} (expected none, tis or icepop)")


@dataclass
class PolicyLoss:
    """One micro-batch's loss (already weighted by the mini-batch normaliser) and detached weighted sums
    for metrics: ``*_sum`` are sums over counted tokens (divide by the token count)."""

    loss: torch.Tensor
    pg_loss: float
    kl_sum: float
    entropy_sum: float
    clipped_sum: float
    tokens: float


def policy_loss(
    logp: torch.Tensor,
    adv: torch.Tensor,
    weights: torch.Tensor,
    *,
    old: torch.Tensor | None = None,
    clip_low: float | None = None,
    clip_high: float | None = None,
    dual_clip: float | None = None,
    is_weight: torch.Tensor | None = None,
    ref: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: KLEstimator = "k3",
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> PolicyLoss:
    """``L = sum_t w_t [ c_t * ppo_t(ratio_t, A_t) + beta * KL_t - alpha * H_t ]`` over a micro-batch.

    ``ratio_t = exp(logp_t - old_t)``, ``old`` defaulting to ``sg[logp]`` (ratio 1 in value with gradient
    ``grad log pi``: one update per rollout batch, the Nemotron-Cascade strict on-policy case, where every
    clip is inactive and the loss is ``-sum_t w_t A_t log pi`` up to a constant).

    Args:
        logp: ``[...]`` log pi_theta of the sampled tokens, with gradient.
        adv: ``[...]`` the advantage of each token's rollout.
        weights: ``[...]`` aggregation weights (:func:`aggregation_weights`), 0 on tokens that do not count.
        old: ``[...]`` log pi_old (detached), for a second or later update on the same rollouts.
        clip_low, clip_high, dual_clip: see :func:`clipped_surrogate`.
        is_weight: ``[...]`` detached rollout/trainer correction ``c_t`` (:func:`is_correction`); 1 if None.
        ref: ``[...]`` log pi_ref; with ``kl_coef > 0`` the ``kl_estimator`` KL is added in the loss.
        entropy: ``[...]`` per-token entropy; ``entropy_coef > 0`` subtracts it (a bonus).

    Raises:
        ValueError: shapes that differ, or a non-zero coefficient without its tensor.
    """
    tensors = [t for t in (adv, weights, old, is_weight, ref, entropy) if t is not None]
    if any(t.shape != logp.shape for t in tensors):
        raise ValueError(f"policy_loss needs equal shapes, got {[tuple(t.shape) for t in (logp, *tensors)]}")
    if kl_coef > 0 and ref is None:
        raise ValueError("kl_coef > 0 needs ref log-probs")
    if entropy_coef > 0 and entropy is None:
        raise ValueError("entropy_coef > 0 needs entropy")
    w = weights.to(logp.dtype)
    base = logp.detach() if old is None else old.to(logp.dtype)
    # Padding may hold garbage log-probs; a zero log-ratio there keeps exp() finite and the gradient clean.
    log_ratio = torch.where(w != 0, logp - base, torch.zeros_like(logp))
    pg_tok, clipped = clipped_surrogate(torch.exp(log_ratio), adv.to(logp.dtype), clip_low=clip_low,
                                        clip_high=clip_high, dual_clip=dual_clip)
    if is_weight is not None:
        pg_tok = pg_tok * is_weight.to(logp.dtype)
    pg = (pg_tok * w).sum()
    loss = pg
    counted = (w != 0).to(logp.dtype)
    kl_sum = 0.0
    if ref is not None:
        kl_tok = kl_estimate(logp, ref.to(logp.dtype), kl_estimator)
        kl_tok = torch.where(w != 0, kl_tok, torch.zeros_like(kl_tok))
        if kl_coef > 0:
            loss = loss + kl_coef * (kl_tok * w).sum()
        kl_sum = float((kl_tok.detach() * counted).sum())
    ent_sum = 0.0
    if entropy is not None:
        if entropy_coef > 0:
            loss = loss - entropy_coef * (entropy * w).sum()
        ent_sum = float((entropy.detach() * counted).sum())
    return PolicyLoss(loss=loss, pg_loss=float(pg.detach()), kl_sum=kl_sum, entropy_sum=ent_sum,
                      clipped_sum=float((clipped.to(logp.dtype) * counted).sum()), tokens=float(counted.sum()))
