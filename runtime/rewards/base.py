"""Shared pieces of the reward library: the `Reward` protocol, user errors, argument and answer helpers.

A reward maps a batch of samples and one completion per sample to one float per completion. A *group*
(GRPO's G rollouts of one prompt) is the run of consecutive completions whose samples share `Sample.id`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Protocol

from cascadec.contract.errors import UserError
from cascadec.contract.plan import Origin


class Reward(Protocol):
    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]: ...


class RewardError(UserError):
    """A user error in a reward: bad arguments, a missing column, an import that does not resolve.

    The message is lowercase with identifiers in backticks; `hint` says how to fix it; `origin` is the
    reward's span in the spec when known. Callers print `str(err)`, never the traceback.
    """

    def __init__(self, message: str, *, hint: str | None = None, origin: Origin | None = None) -> None:
        self.message = message
        self.hint = hint
        self.origin = origin
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f"{self.origin.path}:{self.origin.line}:{self.origin.column}: " if self.origin else ""
        hint = f"\n  help: {self.hint}" if self.hint else ""
        return f"{where}{self.message}{hint}"


def check_batch(samples: Sequence[Any], completions: Sequence[str]) -> None:
    """Raise `RewardError` unless there is exactly one completion per sample."""
    if len(samples) != len(completions):
        raise RewardError(
            f"reward got {len(samples)} samples but {len(completions)} completions",
            hint="pass one sample per completion (repeat a prompt's sample for each of its rollouts)",
        )


def is_field(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"field"}


def resolve(value: Any, sample: Any) -> Any:
    """The value of a reward argument for one sample.

    `{"field": "answer"}` reads `sample.answer`, `{"field": "x"}` reads `sample.meta["x"]`; any
    other value is returned unchanged.

    Raises:
        RewardError: the sample has no such column.
    """
    if not is_field(value):
        return value
    name = value["field"]
    if name == "answer":
        return sample.answer
    if name == "prompt":
        return sample.prompt
    if name == "id":
        return sample.id
    meta = getattr(sample, "meta", None) or {}
    if name not in meta:
        cols = ", ".join(f"`{k}`" for k in ["answer", "prompt", *sorted(meta)])
        raise RewardError(
            f"sample `{sample.id}` has no column `{name}`",
            hint=f"columns present: {cols}; name one with field(\"...\") (a column mapped with "
            f"answer = \"x\" in the data source is read as field(\"answer\"))",
        )
    return meta[name]


def groups(samples: Sequence[Any]) -> list[list[int]]:
    """Indices of each group: maximal runs of consecutive samples with the same `id`."""
    out: list[list[int]] = []
    for i, s in enumerate(samples):
        if out and samples[out[-1][0]].id == s.id:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def group_normalize(values: Sequence[float], samples: Sequence[Any]) -> list[float]:
    """z-score within each group: (v - mean) / std, 0 where the group's std is 0 (GRPO's advantage form)."""
    z = [0.0] * len(values)
    for idx in groups(samples):
        vals = [values[i] for i in idx]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
        for i in idx:
            z[i] = (values[i] - mean) / std if std > 0 else 0.0
    return z


_THINK_END = "</think>"


def strip_thinking(text: str) -> str:
    """The answer part of a completion: the text after the last `</think>`, or all of it if there is none.

    Nemotron-Cascade 1 (§4.3, §4.5) scores only the text after `</think>`; without one the whole response
    is scored, which naturally penalises unfinished thinking.
    """
    cut = text.rfind(_THINK_END)
    return text[cut + len(_THINK_END):] if cut >= 0 else text


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:=]\s*(.+)", re.I)


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) with balanced braces, or None."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def extract_final_answer(text: str) -> str | None:
    """The final answer of a completion, tried in order: `<answer>` tag, `\\boxed{}`, an `Answer: X`
    line, the last non-empty line. Only the text after `</think>` is searched.
    """
    body = strip_thinking(text)
    tags = _ANSWER_TAG.findall(body)
    if tags:
        return tags[-1].strip()
    boxed = last_boxed(body)
    if boxed is not None:
        return boxed.strip()
    lines = [ln.strip() for ln in body.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        m = _ANSWER_LINE.search(ln)
        if m:
            return m.group(1).strip().rstrip(".").strip()
    return lines[-1] if lines else None
