"""GRPO as run in Nemotron-Cascade 1/2: group-normalised advantages and a strict on-policy token-level loss.

Sources: Nemotron-Cascade 2 §4.1.2 (paper-notes §2.4), DeepSeekMath (GRPO) eq. for the group-normalised
advantage, DAPO (arXiv 2503.14476) for the token-level normalisation, dynamic filtering and overlong
filtering, and J. Schulman, "Approximating KL divergence" (2020) for the k3 estimator.

Shapes: ``N`` rollouts in a batch laid out group-contiguously (``G`` rollouts of prompt 0, then of prompt
1, ...); ``T`` completion positions (right-padded); masks are ``[N, T]`` with 1 on real completion tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

OverlongMode = Literal["none", "penalty", "filter"]
LossAggregation = Literal["token_mean", "seq_mean"]

# Groups whose reward std is below this are treated as having no learning signal (all rewards equal up to
# float noise); a group with identical rewards gives exactly zero advantage rather than 0/eps noise.
ZERO_STD = 1e-6


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.float().view(-1, group_size)


def group_advantages(rewards: torch.Tensor, group_size: int, *, eps: float = 1e-6) -> torch.Tensor:
    """GRPO advantages ``A_i = (r_i - mean_g r) / (std_g r + eps)``, one per rollout (``[N] -> [N]``).

    ``std`` is the sample standard deviation with Bessel's correction (``torch.std``, as in veRL's GRPO
    estimator used by Nemotron-Cascade 1 and in TRL). A group of one rollout, or whose rewards are all
    equal, gets advantage 0 (it carries no signal; dynamic filtering drops such groups from the batch).

    Raises:
        ValueError: when ``rewards`` is not 1-D or does not split into groups of ``group_size``.
    """
    grouped = _grouped(rewards, group_size)
    mean = grouped.mean(dim=1, keepdim=True)
    if group_size == 1:
        return torch.zeros_like(grouped).view(-1)
    std = grouped.std(dim=1, keepdim=True)
    adv = (grouped - mean) / (std + eps)
    adv = torch.where(std < ZERO_STD, torch.zeros_like(adv), adv)
    return adv.view(-1)


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[N] -> [N / G]`` bool: true for groups whose rewards are not all equal (DAPO dynamic sampling)."""
    grouped = _grouped(rewards, group_size)
    return (grouped.max(dim=1).values - grouped.min(dim=1).values) > ZERO_STD


def apply_overlong(
    rewards: torch.Tensor, truncated: torch.Tensor, mode: OverlongMode
) -> tuple[torch.Tensor, torch.Tensor]:
    """Handle rollouts that hit the length limit without an end-of-sequence token.

    - ``penalty`` (Nemotron-Cascade 2 IF-RL): the reward of a truncated rollout becomes 0.
    - ``filter`` (DAPO overlong filtering; Cascade 2 multi-domain and code RL): the rollout keeps its reward
      (so its group's baseline is unchanged) but is dropped from the loss and from the token normaliser.
    - ``none``: nothing changes.

    Args: ``rewards`` ``[N]`` float, ``truncated`` ``[N]`` bool.
    Returns: ``(rewards [N], keep [N] bool)``; ``keep`` is false for rollouts excluded from the loss.
    """
    truncated = truncated.to(torch.bool)
    keep = torch.ones_like(truncated)
    if mode == "penalty":
        rewards = torch.where(truncated, torch.zeros_like(rewards), rewards)
    elif mode == "filter":
        keep = ~truncated
    elif mode != "none":
        raise ValueError(f"unknown overlong mode {mode!r} (expected none, penalty or filter)")
    return rewards, keep


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref): ``exp(q - p) - (q - p) - 1`` with ``p = log pi``,
    ``q = log pi_ref`` on tokens sampled from pi (Schulman 2020; the GRPO paper's KL term). Non-negative,
    unbiased; ``[N, T] -> [N, T]``."""
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1.0


@dataclass
class LossParts:
    """One micro-batch's loss and the detached sums needed for batch-level metrics.

    ``loss`` is already divided by the batch-level ``normaliser``, so the micro-batch losses of one step add
    up to the step's loss. ``kl_sum``/``entropy_sum`` are sums over kept tokens (divide by ``tokens``).
    """

    loss: torch.Tensor
    pg_loss: float
    kl_sum: float
    entropy_sum: float
    tokens: float


def grpo_loss(
    logprobs: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    aggregation: LossAggregation = "token_mean",
    normaliser: float | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> LossParts:
    """Strict on-policy GRPO loss (Nemotron-Cascade 2 §4.1.2; paper-notes §2.4).

    ``ratio_it = exp(logp_it - sg[logp_it])`` has value 1 and gradient ``grad log pi(o_it)``: one gradient
    step per rollout batch makes pi_old == pi_theta, so the clipped PPO ratio reduces to this.

    - ``token_mean`` (DAPO; the papers): ``L = -sum_{i,t} A_i ratio_it m_it / sum_i |o_i|``.
    - ``seq_mean`` (original GRPO): ``L = -(1/N) sum_i (1/|o_i|) sum_t A_i ratio_it m_it``.

    With ``kl_coef > 0`` the k3 KL to the reference is added per token with the same aggregation, and with
    ``entropy_coef > 0`` the mean entropy is subtracted (a bonus).

    Args:
        logprobs: ``[N, T]`` log pi_theta of the sampled tokens, with gradient.
        mask: ``[N, T]`` 1 on completion tokens that count (padding, filtered rollouts: 0).
        advantages: ``[N]`` per-rollout advantage, broadcast over tokens.
        normaliser: the denominator for the whole optimizer step when this call is one micro-batch of it:
            total kept tokens (``token_mean``) or kept rollouts (``seq_mean``) over all micro-batches and
            ranks. ``None`` uses this call's own count.
        ref_logprobs: ``[N, T]`` log pi_ref (no gradient), required when ``kl_coef > 0``.
        entropy: ``[N, T]`` per-token entropy, required when ``entropy_coef > 0``.

    Raises:
        ValueError: on shape mismatches or a missing ``ref_logprobs``/``entropy`` for a non-zero coefficient.
    """
    if logprobs.shape != mask.shape or advantages.shape != logprobs.shape[:1]:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, mask {tuple(mask.shape)} and advantages "
            f"{tuple(advantages.shape)} must be [N, T], [N, T] and [N]"
        )
    if kl_coef > 0 and ref_logprobs is None:
        raise ValueError("kl_coef > 0 needs ref_logprobs")
    if entropy_coef > 0 and entropy is None:
        raise ValueError("entropy_coef > 0 needs entropy")
    m = mask.to(logprobs.dtype)
    lengths = m.sum(dim=1)
    if aggregation == "token_mean":
        # Each token weighs 1 / (tokens in the step).
        weights = m / (normaliser if normaliser is not None else lengths.sum().clamp(min=1.0))
    elif aggregation == "seq_mean":
        # Each kept rollout weighs 1 / (rollouts in the step), spread evenly over its own tokens.
        kept = (lengths > 0).to(m.dtype)
        count = normaliser if normaliser is not None else kept.sum().clamp(min=1.0)
        weights = m / lengths.clamp(min=1.0).unsqueeze(1) / count
    else:
        raise ValueError(f"unknown loss aggregation {aggregation!r} (expected token_mean or seq_mean)")

    ratio = torch.exp(logprobs - logprobs.detach())
    pg = -(advantages.to(logprobs.dtype).unsqueeze(1) * ratio * weights).sum()
    loss = pg
    kl_sum = 0.0
    if ref_logprobs is not None:
        kl_tok = k3_kl(logprobs, ref_logprobs.to(logprobs.dtype))
        if kl_coef > 0:
            loss = loss + kl_coef * (kl_tok * weights).sum()
        kl_sum = float((kl_tok.detach() * m).sum())
    ent_sum = 0.0
    if entropy is not None:
        if entropy_coef > 0:
            loss = loss - entropy_coef * (entropy * weights).sum()
        ent_sum = float((entropy.detach() * m).sum())
    return LossParts(loss=loss, pg_loss=float(pg.detach()), kl_sum=kl_sum, entropy_sum=ent_sum,
                     tokens=float(m.sum()))
