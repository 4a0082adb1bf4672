"""Text-matching rewards: `exact`, `choice` (multiple-choice letter), `json_schema` (structured output)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from cascadec.contract.plan import Origin
from runtime.rewards.base import (
    RewardError,
    check_batch,
    extract_final_answer,
    is_field,
    last_boxed,
    resolve,
    strip_thinking,
)


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


class ExactReward:
    """1.0 when the completion's final answer equals the gold answer (or one of a list of them).

    Args:
        answer: gold answer or list of accepted answers; default `{"field": "answer"}`.
        normalize: compare case-folded with whitespace collapsed (default true); false compares exactly.
    """

    def __init__(self, answer: Any = None, *, normalize: bool = True, origin: Origin | None = None) -> None:
        self.answer = {"field": "answer"} if answer is None else answer
        self.normalize = normalize
        self.origin = origin

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        out = []
        for sample, completion in zip(samples, completions):
            gold = resolve(self.answer, sample)
            golds = gold if isinstance(gold, list) else [gold]
            pred = extract_final_answer(completion)
            if pred is None:
                out.append(0.0)
                continue
            f = _norm if self.normalize else str.strip
            out.append(1.0 if any(f(str(g)) == f(pred) for g in golds) else 0.0)
        return out


_LETTERS = "ABCDEFGHIJ"
# Ordered from most to least explicit; the first pattern that matches decides.
_CHOICE_PATTERNS = [
    re.compile(r"answer\s*(?:is|:)?\s*[:\s]*\(?\**\s*([A-J])\b\)?", re.I),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"^\s*\**([A-J])[\).:]?\**\s*$", re.M),
]


def extract_choice(completion: str) -> str | None:
    """The chosen option letter (A–J) of a multiple-choice completion, or None.

    Tried in order on the text after `</think>`: `\\boxed{X}`, the last "answer is X" / "Answer: X",
    the last "(X)", the last line that is only a letter.

    >>> extract_choice("Reasoning...\\nThe answer is (C).")
    'C'
    >>> extract_choice("\\\\boxed{b}")
    'B'
    """
    body = strip_thinking(completion)
    boxed = last_boxed(body)
    if boxed is not None:
        m = re.fullmatch(r"\s*(?:\\text\{)?\(?([A-Ja-j])\)?\}?\s*", boxed)
        return m.group(1).upper() if m else None
    for pattern in _CHOICE_PATTERNS:
        found = pattern.findall(body)
        if found:
            letter = found[-1].upper()
            return letter if letter in _LETTERS else None
    return None


class ChoiceReward:
    """1.0 when the extracted option letter equals the gold letter (MCQA, Nemotron-Cascade 2 multi-domain RL).

    Args:
        answer: the gold letter (`"B"`, case-insensitive) or 0-based option index; default `{"field": "answer"}`.
    """

    def __init__(self, answer: Any = None, *, origin: Origin | None = None) -> None:
        self.answer = {"field": "answer"} if answer is None else answer
        self.origin = origin

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        out = []
        for sample, completion in zip(samples, completions):
            gold = resolve(self.answer, sample)
            if isinstance(gold, int) and 0 <= gold < len(_LETTERS):
                gold = _LETTERS[gold]
            if not (isinstance(gold, str) and gold.strip().upper() in _LETTERS):
                raise RewardError(f"sample `{sample.id}` has choice answer {gold!r}, not a letter A-J",
                                  hint="store the gold option as a letter or a 0-based index",
                                  origin=self.origin)
            out.append(1.0 if extract_choice(completion) == gold.strip().upper() else 0.0)
        return out


_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.S | re.I)


def extract_json(completion: str) -> Any:
    """The JSON value in a completion: the last ```json fenced block, else the whole answer part, else the
    outermost `{...}` or `[...]` span. Raises `ValueError` when none parses."""
    body = strip_thinking(completion).strip()
    candidates = [m.strip() for m in _FENCE.findall(body)][::-1] + [body]
    for open_, close in ("{}", "[]"):
        i, j = body.find(open_), body.rfind(close)
        if 0 <= i < j:
            candidates.append(body[i:j + 1])
    for text in candidates:
        try:
            return json.loads(text)
        except ValueError:
            continue
    raise ValueError("no JSON value found")


@cache
def _validator(schema_json: str) -> Any:
    import jsonschema

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


class JsonSchemaReward:
    """1.0 when the completion contains JSON that validates against `schema` (JSON Schema, any draft).

    Args:
        schema: a schema object, its JSON text, or `{"field": "x"}` for a per-sample schema.
    """

    def __init__(self, schema: Any, *, origin: Origin | None = None) -> None:
        self.schema = schema
        self.origin = origin
        if not is_field(schema):
            self._compile(schema, "the spec")

    def _compile(self, schema: Any, where: str) -> Any:
        import jsonschema

        try:
            text = schema if isinstance(schema, str) else json.dumps(schema, sort_keys=True)
            return _validator(text)
        except (ValueError, jsonschema.SchemaError) as err:
            first = str(err).splitlines()[0]
            raise RewardError(f"invalid JSON schema in {where}: {first}",
                              hint="give a JSON Schema object, e.g. {\"type\": \"object\"}",
                              origin=self.origin) from None

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        out = []
        for sample, completion in zip(samples, completions):
            validator = self._compile(resolve(self.schema, sample), f"sample `{sample.id}`")
            try:
                value = extract_json(completion)
            except ValueError:
                out.append(0.0)
                continue
            out.append(1.0 if validator.is_valid(value) else 0.0)
        return out
