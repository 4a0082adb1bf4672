"""The rollouts one ``grpo`` step trains on, gathered over one or more generation batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from runtime.rollout.base import RolloutBatch

if TYPE_CHECKING:
    from runtime.data import Sample


def concat(a: RolloutBatch, b: RolloutBatch) -> RolloutBatch:
    """``a``'s rows then ``b``'s (both group-contiguous, so the result is too)."""
    return RolloutBatch(a.prompt_ids + b.prompt_ids, a.completion_ids + b.completion_ids,
                        a.completion_logprobs + b.completion_logprobs, a.truncated + b.truncated, a.texts + b.texts)


@dataclass
class Attempt:
    """Rollouts with their rewards ``[N]``, ``keep`` ``[N]`` (in the loss), ``truncated`` ``[N]``, the
    per-group ``informative`` flags ``[N / G]``, and the time spent generating and scoring."""

    rollouts: RolloutBatch
    samples: list[Sample]
    rewards: torch.Tensor
    keep: torch.Tensor
    truncated: torch.Tensor
    informative: torch.Tensor
    gen_s: float
    reward_s: float
    attempts: int = 1

    def extend(self, more: "Attempt") -> "Attempt":
        """This attempt followed by ``more`` (one more generation batch)."""
        return Attempt(concat(self.rollouts, more.rollouts), self.samples + more.samples,
                       torch.cat([self.rewards, more.rewards]), torch.cat([self.keep, more.keep]),
                       torch.cat([self.truncated, more.truncated]), torch.cat([self.informative, more.informative]),
                       self.gen_s + more.gen_s, self.reward_s + more.reward_s, self.attempts + 1)

    def only_informative(self, share: int, group: int) -> "Attempt":
        """Keep in the loss only the first ``share`` informative groups (DAPO fills the batch, no more)."""
        chosen = self.informative.clone()
        chosen[chosen.cumsum(0) > share] = False
        keep = self.keep & chosen.repeat_interleave(group)
        return Attempt(self.rollouts, self.samples, self.rewards, keep, self.truncated, self.informative,
                       self.gen_s, self.reward_s, self.attempts)

    def metrics(self, train_s: float, batch: list[Sample]) -> dict[str, float]:
        """Step metrics about the rollouts (see ``GRPOTrainer.step``)."""
        lengths = torch.tensor([len(c) for c in self.rollouts.completion_ids], dtype=torch.float32)
        r = self.rewards
        out = {
            "reward_mean": float(r.mean()),
            "reward_std": float(r.std()) if len(r) > 1 else 0.0,
            "response_len": float(lengths.mean()),
            "truncated_frac": float(self.truncated.float().mean()),
            "filtered_frac": float(1.0 - self.keep.float().mean()),
            "zero_std_frac": float(1.0 - self.informative.float().mean()),
            "informative_frac": float(self.informative.float().mean()),
            "sampling_attempts": float(self.attempts),
            "tokens_per_s": float(lengths.sum()) / max(self.gen_s + train_s, 1e-9),
            "gen_s": self.gen_s,
            "reward_s": self.reward_s,
            "train_s": train_s,
        }
        for domain in sorted({s.domain for s in batch}):
            rows = torch.tensor([s.domain == domain for s in self.samples])
            out[f"reward_mean/{domain}"] = float(r[rows].mean())
        return out
