"""GRPO as run in Nemotron-Cascade 1/2: group-normalised advantages, dynamic and overlong filtering (the loss
itself, with its PPO-style options, is :mod:`runtime.losses.policy`).

Sources: Nemotron-Cascade 2 §4.1.2 (paper-notes §2.4), DeepSeekMath (GRPO) eq. for the group-normalised
advantage, DAPO (arXiv 2503.14476) for dynamic filtering and overlong filtering.

Shapes: ``N`` rollouts in a batch laid out group-contiguously (``G`` rollouts of prompt 0, then of prompt
1, ...); ``T`` completion positions (right-padded); masks are ``[N, T]`` with 1 on real completion tokens.
"""

from __future__ import annotations

from typing import Literal

import torch

OverlongMode = Literal["none", "penalty", "filter"]

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
