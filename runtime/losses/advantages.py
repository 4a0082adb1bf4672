"""Advantage estimators for outcome rewards: one scalar advantage per rollout, broadcast over its tokens.

Rollouts are laid out group-contiguously (``G`` rollouts of prompt 0, then of prompt 1, ...), as in
:mod:`runtime.losses.grpo`. Every estimator maps rewards ``[N]`` to advantages ``[N]``; a group whose rewards
are all equal gets advantage 0 from the group-relative ones (it carries no signal).

- ``grpo``: ``(r_i - mean_g r) / (std_g r + eps)`` (DeepSeekMath, Shao et al. 2024, §4.1.2 outcome
  supervision; :func:`runtime.losses.grpo.group_advantages`).
- ``dr_grpo``: ``r_i - mean_g r`` (Dr. GRPO, Liu et al. 2025, "Understanding R1-Zero-Like Training", §3.1
  and Eq. 3: no division by the group's std, which up-weights nearly solved or nearly failed prompts).
- ``rloo``: ``r_i - mean_{j != i} r_j = G/(G-1) (r_i - mean_g r)`` (REINFORCE leave-one-out, Kool et al.
  2019; Ahmadian et al. 2024, "Back to Basics", Eq. 7).
- ``reinforce_pp_baseline``: the group mean is subtracted, then the result is whitened over the whole batch
  with token weights (REINFORCE++, Hu 2025, arXiv 2501.03262, §3 "REINFORCE++-baseline"; veRL's
  ``compute_reinforce_plus_plus_baseline_outcome_advantage``: group mean, then ``masked_whiten`` over the
  batch's response tokens). Unlike the others it is not 0 for a zero-variance group: the batch mean is
  subtracted from every rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from runtime.losses.grpo import _grouped, group_advantages

AdvantageEstimator = Literal["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"]
ESTIMATORS = ("grpo", "dr_grpo", "rloo", "reinforce_pp_baseline")

# The variance floor of batch whitening (veRL's masked_whiten uses 1e-8 inside the rsqrt).
WHITEN_EPS = 1e-8

SumAcrossRanks = Callable[[torch.Tensor], torch.Tensor]


def centred(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``r_i - mean_g r`` per rollout (``[N] -> [N]``), the Dr. GRPO advantage."""
    grouped = _grouped(rewards, group_size)
    return (grouped - grouped.mean(dim=1, keepdim=True)).view(-1)


def leave_one_out(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``r_i - (sum_g r - r_i) / (G - 1)`` per rollout (``[N] -> [N]``); 0 for groups of one rollout."""
    if group_size == 1:
        return torch.zeros_like(_grouped(rewards, 1)).view(-1)
    return centred(rewards, group_size) * (group_size / (group_size - 1))


def batch_whiten(values: torch.Tensor, weights: torch.Tensor, reduce: SumAcrossRanks | None = None) -> torch.Tensor:
    """``(v - mu) / sqrt(var + 1e-8)`` with ``mu``, ``var`` the ``weights``-weighted mean and unbiased
    variance of ``values`` (``[N]``, weights ``[N]``: each rollout's token count, so that every response
    token counts once as in veRL's ``masked_whiten``).

    ``reduce`` sums a tensor over data-parallel ranks, so that the statistics are those of the global batch
    (``None``: this process's batch only).
    """
    w = weights.to(values.dtype)
    stats = torch.stack([w.sum(), (w * values).sum(), (w * values * values).sum()])
    if reduce is not None:
        stats = reduce(stats)
    n, s1, s2 = stats.unbind()
    if float(n) <= 1:
        return values - s1 / n.clamp(min=1.0)
    mean = s1 / n
    var = (s2 / n - mean * mean).clamp(min=0.0) * (n / (n - 1))
    return (values - mean) * torch.rsqrt(var + WHITEN_EPS)


def advantages(
    kind: AdvantageEstimator,
    rewards: torch.Tensor,
    group_size: int,
    *,
    lengths: torch.Tensor | None = None,
    reduce: SumAcrossRanks | None = None,
) -> torch.Tensor:
    """Per-rollout advantages ``[N]`` of estimator ``kind`` (see the module docstring for each formula).

    Args:
        rewards: ``[N]`` one scalar reward per rollout, group-contiguous.
        group_size: ``G``, rollouts per prompt.
        lengths: ``[N]`` counted tokens per rollout, the whitening weights of ``reinforce_pp_baseline``
            (rollouts left out of the loss have length 0); required for that estimator only.
        reduce: sums over data-parallel ranks for the batch statistics of ``reinforce_pp_baseline``.

    Raises:
        ValueError: an unknown ``kind``, rewards that do not split into groups, or missing ``lengths``.
    """
    if kind == "grpo":
        return group_advantages(rewards, group_size)
    if kind == "dr_grpo":
        return centred(rewards, group_size)
    if kind == "rloo":
        return leave_one_out(rewards, group_size)
    if kind == "reinforce_pp_baseline":
        if lengths is None:
            raise ValueError("reinforce_pp_baseline needs the rollout lengths (whitening weights)")
        return batch_whiten(centred(rewards, group_size), lengths, reduce)
    raise ValueError(f"unknown advantage estimator {kind!r} (expected one of {', '.join(ESTIMATORS)})")
