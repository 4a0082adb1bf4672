"""Reward modifiers: weighted sums, the Nemotron-Cascade 1 IF+RM combination, code-switch and overlong handling."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal

from cascadec.contract.plan import Origin
from runtime.rewards.base import Reward, RewardError, check_batch, group_normalize


def _checked(reward: Reward, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
    """Call a part and insist on one value per completion, as floats (peers.md pain point 7); finiteness
    is checked on the domain's total reward (runtime.entry.GuardedReward)."""
    values = reward(samples, completions)
    if len(values) != len(completions):
        raise RewardError(f"reward part `{type(reward).__name__}` returned {len(values)} values "
                          f"for {len(completions)} completions")
    return [float(v) for v in values]


class Weighted:
    """r = Σ_k w_k · r_k over the parts, evaluated on the same batch."""

    def __init__(self, parts: list[Reward], weights: list[float], *, origin: Origin | None = None) -> None:
        if not parts:
            raise RewardError("reward `weighted` has no parts", hint="give at least one reward", origin=origin)
        if weights and len(weights) != len(parts):
            raise RewardError(f"reward `weighted` has {len(parts)} parts but {len(weights)} weights",
                              hint="give one weight per part", origin=origin)
        self.parts = parts
        self.weights = weights or [1.0] * len(parts)

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        total = [0.0] * len(completions)
        for part, w in zip(self.parts, self.weights):
            for i, v in enumerate(_checked(part, samples, completions)):
                total[i] += w * v
        return total


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class CombinedIfRm:
    """Instruction-following gate plus a bounded preference score (Nemotron-Cascade 1 §4.4, IF-RL for the
    thinking models): r = R_IF + sigmoid(ẑ_RM) if R_IF == 1 else 0, where ẑ_RM is the reward model's score
    z-normalised within each group (consecutive completions of one sample id).
    """

    def __init__(self, instruction: Reward, preference: Reward) -> None:
        self.instruction = instruction
        self.preference = preference

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        r_if = _checked(self.instruction, samples, completions)
        z = group_normalize(_checked(self.preference, samples, completions), samples)
        return [ri + _sigmoid(zi) if ri == 1.0 else 0.0 for ri, zi in zip(r_if, z)]


# Scripts that never count as a switch: Latin (code, numbers, names) and Greek (math symbols).
_ALWAYS_ALLOWED = frozenset({"LATIN", "GREEK"})
_SCRIPT_ALIASES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "IDEOGRAPHIC": "CJK", "HANGUL": "HANGUL"}


def scripts(text: str) -> set[str]:
    """Unicode scripts of the letters in `text`, by the first word of each character's name
    (`LATIN`, `CJK`, `CYRILLIC`, `ARABIC`, …; Hiragana/Katakana count as `CJK`)."""
    found: set[str] = set()
    for ch in set(text):
        if not unicodedata.category(ch).startswith("L"):
            continue
        name = unicodedata.name(ch, "")
        if name:
            first = name.split()[0]
            found.add(_SCRIPT_ALIASES.get(first, first))
    return found


def code_switched(prompt: str, completion: str) -> bool:
    """True when the completion uses a script that the prompt does not (besides Latin and Greek)."""
    allowed = _ALWAYS_ALLOWED | scripts(prompt)
    return bool(scripts(completion) - allowed)


class CodeSwitchPenalty:
    """Replace the reward by `penalty` when a completion switches language script (Nemotron-Cascade 1:
    −1 in math RL, 0 in code RL; e.g. CJK characters in the answer to an English prompt)."""

    def __init__(self, inner: Reward, penalty: float) -> None:
        self.inner = inner
        self.penalty = float(penalty)

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        values = _checked(self.inner, samples, completions)
        return [self.penalty if code_switched(s.prompt, c) else v
                for s, c, v in zip(samples, completions, values)]


def apply_overlong(rewards: Sequence[float], truncated: Sequence[bool],
                   mode: Literal["none", "penalty", "filter"]) -> tuple[list[float], list[bool]]:
    """`runtime.losses.grpo.apply_overlong` (Nemotron-Cascade 2 Tables 8–10: `penalty` sets the reward of a
    completion that hit the length limit without EOS to 0; `filter` keeps its reward but marks it to be
    dropped from the loss) on plain lists, for callers that hold no tensors.

    Returns:
        (rewards, keep): the adjusted rewards and, per completion, whether it enters the loss.
    Raises:
        ValueError: ``rewards`` and ``truncated`` differ in length, or ``mode`` is unknown.
    """
    import torch  # rewards import no torch at module level (runtime/rewards/__init__.py)

    from runtime.losses.grpo import apply_overlong as apply_on_tensors

    if len(rewards) != len(truncated):
        raise ValueError(f"{len(rewards)} rewards but {len(truncated)} truncation flags")
    adjusted, keep = apply_on_tensors(torch.tensor(list(rewards), dtype=torch.float64),
                                      torch.tensor(list(truncated), dtype=torch.bool), mode)
    return adjusted.tolist(), keep.tolist()
