"""`gym`: a reasoning-gym item scored by its own generator's `score_answer(answer, entry)`.

The reasoning-gym entry (`{"question", "answer", "metadata": {"source_dataset", ...}}`) is read from the
sample: `Sample.meta["entry"]` when the data loader kept the whole entry, otherwise it is rebuilt from
`Sample.prompt`, `Sample.answer` and `Sample.meta["metadata"]` (or `Sample.meta` itself). The completion's
answer is extracted with `extract_final_answer` (`<answer>` tag, `\\boxed{}`, `Answer: X`, last line).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from cascadec.contract.plan import Origin
from runtime.rewards.base import RewardError, check_batch, extract_final_answer


@cache
def _scorer(name: str) -> Callable[[str | None, dict[str, Any]], float]:
    import reasoning_gym

    try:
        return reasoning_gym.get_score_answer_fn(name)
    except ValueError:
        raise RewardError(f"reasoning-gym has no dataset `{name}`",
                          hint="use a name listed by `reasoning_gym.factory.DATASETS`") from None


def gym_entry(sample: Any) -> dict[str, Any]:
    """The reasoning-gym entry a sample came from (see the module docstring for where it is read)."""
    meta = getattr(sample, "meta", None) or {}
    if isinstance(meta.get("entry"), dict):
        return meta["entry"]
    metadata = meta.get("metadata", meta)
    return {"question": sample.prompt, "answer": sample.answer, "metadata": metadata}


class GymReward:
    """Score in [0, 1] from the item's reasoning-gym generator.

    Args:
        name: the generator name; default: each entry's `metadata["source_dataset"]`.
    """

    def __init__(self, name: str | None = None, *, origin: Origin | None = None) -> None:
        self.name = name
        self.origin = origin
        if name is not None:
            try:
                _scorer(name)
            except RewardError as err:
                raise RewardError(err.message, hint=err.hint, origin=origin) from None

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        out = []
        for sample, completion in zip(samples, completions):
            entry = gym_entry(sample)
            name = self.name or entry.get("metadata", {}).get("source_dataset")
            if not name:
                raise RewardError(
                    f"sample `{sample.id}` has no reasoning-gym `source_dataset`",
                    hint="load the domain with gym(...) or pass gym(name = \"...\")", origin=self.origin)
            out.append(float(_scorer(name)(extract_final_answer(completion), entry)))
        return out
