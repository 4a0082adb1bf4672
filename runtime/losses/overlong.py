"""Overlong rules for rollouts near or at the length limit, with rewards of any sign.

- ``penalty``: a truncated rollout (no end-of-sequence token within ``max_response``) gets the reward
  ``value`` (0 by default, Nemotron-Cascade 2 IF-RL; a negative value such as -1 where rewards lie in
  [-1, 1], so that cutting an answer short is never better than a wrong answer).
- ``filter``: DAPO overlong filtering (``runtime.losses.grpo.apply_overlong``).
- ``soft``: DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476, Eq. 13), added to the reward::

      R_length(|y|) = 0                                  if |y| <= L_max - L_cache
                    = ((L_max - L_cache) - |y|) / L_cache if L_max - L_cache < |y| <= L_max
                    = -1                                 if |y| > L_max

  times ``factor`` (veRL's ``overlong_penalty_factor``), with ``L_max`` = the stage's ``max_response`` and
  ``L_cache`` = ``buffer`` tokens. A rollout cannot exceed ``L_max`` here (the engine stops there), so the
  last case is reached only in the limit ``|y| = L_max`` → ``-1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class OverlongRule:
    """One row's rule: ``kind`` none | penalty | filter | soft, with its parameters (see the module doc)."""

    kind: str = "none"
    value: float = 0.0
    buffer: int = 0
    factor: float = 1.0


def soft_overlong(lengths: torch.Tensor, max_len: int, buffer: int, factor: float = 1.0) -> torch.Tensor:
    """DAPO Eq. 13 times ``factor``: ``[N]`` completion lengths (tokens) -> ``[N]`` penalties (≤ 0).

    Raises:
        ValueError: ``buffer`` not in ``(0, max_len]``.
    """
    if not 0 < buffer <= max_len:
        raise ValueError(f"overlong buffer {buffer} must lie in (0, max_response = {max_len}]")
    start = max_len - buffer
    exceed = (lengths.to(torch.float32) - start).clamp(min=0.0)
    return -(exceed / buffer).clamp(max=1.0) * factor


def apply_rules(rewards: torch.Tensor, truncated: torch.Tensor, lengths: torch.Tensor, max_len: int,
                rules: list[OverlongRule]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's rule applied: ``rewards [N]``, ``truncated [N]`` bool, ``lengths [N]`` tokens ->
    ``(rewards [N], keep [N] bool)``; ``keep`` is false for rollouts left out of the loss (``filter``)."""
    rewards = rewards.clone().to(torch.float32)
    truncated = truncated.to(torch.bool)
    keep = torch.ones_like(truncated)
    for i, rule in enumerate(rules):
        if rule.kind == "penalty" and truncated[i]:
            rewards[i] = rule.value
        elif rule.kind == "soft":
            rewards[i] += soft_overlong(lengths[i:i + 1], max_len, rule.buffer, rule.factor)[0]
        elif rule.kind == "filter":
            keep[i] = not bool(truncated[i])
        elif rule.kind not in ("none", "penalty"):
            raise ValueError(f"unknown overlong rule {rule.kind!r} (expected none, penalty, filter or soft)")
    return rewards, keep


def rule_of(params: object, domain: object) -> OverlongRule:
    """The rule of one row: the stage's (``params.overlong`` set) with the stage's parameters, else the domain's."""
    owner = params if getattr(params, "overlong", None) is not None else domain
    return OverlongRule(kind=owner.overlong, value=owner.overlong_value,  # type: ignore[attr-defined]
                        buffer=owner.overlong_buffer, factor=owner.overlong_factor)  # type: ignore[attr-defined]
