"""The rollout-engine interface shared by the GRPO and distillation stages (docs/ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class RolloutBatch:
    """Completions of a generate call, ``len(prompts) * n`` rows in group-contiguous order (all ``n``
    completions of prompt 0, then of prompt 1, ...).

    ``completion_ids[i]`` ends with the EOS token when the model stopped by itself; ``truncated[i]`` is true
    when it hit ``max_new_tokens`` instead. ``completion_logprobs[i][t]`` is ``log pi_inf`` of token ``t``
    under the distribution it was sampled from (after temperature, top-k and top-p), the denominator of
    train/inference importance ratios. ``texts[i]`` is the decoded completion without special tokens.
    """

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    completion_logprobs: list[list[float]]
    truncated: list[bool]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.completion_ids)


class RolloutEngine(Protocol):
    """Generates completions from the current policy."""

    def generate(self, prompts: list[str], *, n: int, max_new_tokens: int, temperature: float,
                 top_p: float, top_k: int, seed: int) -> RolloutBatch:
        """Sample ``n`` completions per prompt; ``temperature == 0`` means greedy; ``top_k == 0`` and
        ``top_p == 1`` disable those filters. The same ``seed`` and weights give the same rollouts."""
        ...

    def sync_weights(self, model) -> None:
        """Make the engine sample from ``model``'s current weights (called after each optimizer step)."""
        ...


def engine_metrics(engine: RolloutEngine | None) -> dict[str, float]:
    """An engine's own step metrics (``metrics()``, where it has one: the rollout server's weight sync)."""
    metrics = getattr(engine, "metrics", None)
    return metrics() if callable(metrics) else {}
