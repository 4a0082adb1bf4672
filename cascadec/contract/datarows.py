"""What one data row must hold: the rule the runtime applies and the compiler checks, in one place.

A row is one JSON object of a `jsonl` file, one record of `inline([...])` or one row of an `hf_disk` dataset.
``fields`` (`cascadec.contract.plan.DataSource.fields`) maps roles to column names; `prompt` and `answer` default to
the columns of the same name. The runtime (`runtime/data.py`, `runtime/stages/sft.py`) then needs:

- every stage: a prompt, read from the prompt column, or else the last user turn of a mapped `messages`
  column; a prompt column must hold a string;
- an SFT stage: something to train on, a non-null `completion` role (a column named or mapped so) or a
  non-null answer.

Both sides read this module: the compiler's data check (`cascadec/checks/data.py`) and the runtime's row
loader (`runtime/data.py`), so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROMPT, ANSWER, COMPLETION, MESSAGES = "prompt", "answer", "completion", "messages"
DEFAULT_COLUMNS: Mapping[str, str] = {PROMPT: PROMPT, ANSWER: ANSWER}


def columns(fields: Mapping[str, str]) -> dict[str, str]:
    """role → column name: the defaults, overridden and extended by ``fields``."""
    return {**DEFAULT_COLUMNS, **fields}


def roles(row: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """role → value for every column of ``row``; an unmapped column's role is its own name.

    When two columns reach one role, the later column wins, as in ``Sample.meta`` (`runtime/data.py`).
    """
    role_of = {col: role for role, col in columns(fields).items()}
    return {role_of.get(col, col): value for col, value in row.items()}


@dataclass(frozen=True)
class RowProblem:
    """Why the runtime would reject a row.

    ``role`` is the role that cannot be filled (`prompt` or `completion`); ``column`` the column the runtime
    looked for; ``kind`` is `missing` (no such column, or only null values for `completion`) or `not_string`.
    """

    role: str
    column: str
    kind: str


def prompt_problem(row: Mapping[str, Any], fields: Mapping[str, str]) -> RowProblem | None:
    """None when the runtime finds a prompt in ``row``; else what is wrong.

    A `messages` column is only checked to exist: its content is validated when the row is loaded.
    """
    cols = columns(fields)
    prompt_col = cols[PROMPT]
    if prompt_col in row:
        return None if isinstance(row[prompt_col], str) else RowProblem(PROMPT, prompt_col, "not_string")
    if MESSAGES in cols and cols[MESSAGES] in row:
        return None
    return RowProblem(PROMPT, prompt_col, "missing")


def sft_target_problem(row: Mapping[str, Any], fields: Mapping[str, str]) -> RowProblem | None:
    """None when an SFT stage has a completion to train on in ``row`` (its `completion` role, else its answer)."""
    if roles(row, fields).get(COMPLETION) is not None or row.get(columns(fields)[ANSWER]) is not None:
        return None
    return RowProblem(COMPLETION, columns(fields).get(COMPLETION, COMPLETION), "missing")
