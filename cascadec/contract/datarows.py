"""What one data row must hold: the rule the runtime applies and the compiler checks, in one place.

A row is one JSON object of a `jsonl` file, one record of `inline([...])` or one row of an `hf_disk` dataset.
``fields`` (`cascadec.contract.plan.DataSource.fields`) maps roles to column names; `prompt` and `answer` default to
the columns of the same name. The runtime (`runtime/data.py`, `runtime/stages/sft.py`) then needs:

- every stage: a prompt, read from the prompt column, or else from a mapped `messages` column; a prompt
  column holds a string or a chat list (OpenAI message format, checked turn by turn when loaded);
- an SFT stage: something to train on, a non-null `completion` role (a column named or mapped so), a
  non-null answer, or an assistant turn in the chat list.

Column names may be dotted paths into nested columns (`reward_model.ground_truth`, `cascadec.contract.tables`).

Both sides read this module: the compiler's data check (`cascadec/checks/data.py`) and the runtime's row
loader (`runtime/data.py`), so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cascadec.contract.tables import MISSING, get_path

PROMPT, ANSWER, COMPLETION, MESSAGES = "prompt", "answer", "completion", "messages"
DEFAULT_COLUMNS: Mapping[str, str] = {PROMPT: PROMPT, ANSWER: ANSWER}


def columns(fields: Mapping[str, str]) -> dict[str, str]:
    """role → column name: the defaults, overridden and extended by ``fields``."""
    return {**DEFAULT_COLUMNS, **fields}


@dataclass(frozen=True)
class RowProblem:
    """Why the runtime would reject a row.

    ``role`` is the role that cannot be filled (`prompt` or `completion`); ``column`` the column the runtime
    looked for; ``kind`` is `missing` (no such column, or only null values for `completion`) or `not_string`.
    """

    role: str
    column: str
    kind: str


def meta_of(row: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """What a Sample keeps besides prompt and answer: every top-level column not mapped to a role, under its
    own name, and every mapped role other than prompt and answer whose column is present, under the role."""
    cols = columns(fields)
    meta = {col: value for col, value in row.items() if col not in cols.values()}
    for role, col in cols.items():
        value = get_path(row, col)
        if role not in (PROMPT, ANSWER) and value is not MISSING:
            meta[role] = value
    return meta


def prompt_value(row: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[str, Any]:
    """(column, value) the runtime reads the prompt from; the value is `MISSING` when there is none."""
    cols = columns(fields)
    value = get_path(row, cols[PROMPT])
    if value is MISSING and MESSAGES in cols:
        return cols[MESSAGES], get_path(row, cols[MESSAGES])
    return cols[PROMPT], value


def prompt_problem(row: Mapping[str, Any], fields: Mapping[str, str]) -> RowProblem | None:
    """None when the runtime finds a prompt in ``row``; else what is wrong.

    A chat list is only checked to be a list: its turns are validated when the row is loaded.
    """
    column, value = prompt_value(row, fields)
    if value is MISSING:
        return RowProblem(PROMPT, columns(fields)[PROMPT], "missing")
    return None if isinstance(value, (str, list)) else RowProblem(PROMPT, column, "not_string")


def has_assistant_turn(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(m, dict) and m.get("role") == "assistant" for m in value)


def sft_target_problem(row: Mapping[str, Any], fields: Mapping[str, str]) -> RowProblem | None:
    """None when an SFT stage has something to train on in ``row``: its `completion` role, its answer, or an
    assistant turn of its chat list."""
    cols = columns(fields)
    if meta_of(row, fields).get(COMPLETION) not in (None, []) or get_path(row, cols[ANSWER], None) is not None \
            or has_assistant_turn(prompt_value(row, fields)[1]):
        return None
    return RowProblem(COMPLETION, cols.get(COMPLETION, COMPLETION), "missing")
