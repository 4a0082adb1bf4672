"""One data row -> one ``Sample``: roles mapped to (possibly nested) columns, chat lists in OpenAI message format.

``fields`` maps roles to column paths (``cascadec.datarows``; dotted paths reach nested columns,
``cascadec.contract.tables.get_path``). The prompt is the ``prompt`` column, or the ``messages`` column when the prompt
column is absent. A prompt column may hold text or a chat list ``[{"role", "content"}, ...]`` (roles
``system``, ``user``, ``assistant``, ``tool``; content text or a list of ``{"type": "text", "text"}`` parts).
A chat list is kept whole in ``Sample.messages``; ``Sample.prompt`` is then its last user turn (what rewards
and logs show). Rendering (``runtime.conversation``) uses every turn: a rollout continues the conversation
up to its last non-assistant turn, and SFT trains on every assistant turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cascadec.contract.errors import UserError
from cascadec.contract.datarows import ANSWER, PROMPT, columns, meta_of, prompt_value
from cascadec.contract.tables import MISSING, get_path

ROLES = ("system", "user", "assistant", "tool")


class RowError(UserError, ValueError):
    """A row the runtime cannot use; ``runtime.data`` re-raises it as a ``DataError`` with the location."""


@dataclass(frozen=True)
class Sample:
    """One prompt. ``id`` is stable across runs (``"<domain>/<split>/<row>"``); ``messages`` is the whole chat
    list when the row gave one (``None`` for a text prompt)."""

    id: str
    domain: str
    prompt: str
    answer: Any = None
    meta: dict = field(default_factory=dict)
    messages: tuple[dict[str, str], ...] | None = None


def _text(content: Any, where: str, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise RowError(f"{where}: message {i + 1} has content of type {type(content).__name__}, not text\n"
                   'help: give `content` as a string or a list of {"type": "text", "text": ...} parts')


def chat_list(value: Any, where: str, need_user: bool = True) -> tuple[dict[str, str], ...]:
    """``value`` checked as an OpenAI-format chat list (with at least one user turn when ``need_user``);
    content parts joined.

    Raises:
        RowError: not a list of ``{role, content}`` objects, an unknown role, or no user turn.
    """
    if not isinstance(value, list) or not value:
        raise RowError(f"{where}: a chat prompt must be a non-empty list of {{role, content}} objects, found "
                       f"{type(value).__name__}\nhelp: give e.g. [{{\"role\": \"user\", \"content\": \"...\"}}]")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m:
            raise RowError(f"{where}: message {i + 1} is not a {{role, content}} object\n"
                           "help: every message needs a `role` and a `content`")
        if m["role"] not in ROLES:
            raise RowError(f"{where}: message {i + 1} has role `{m['role']}`\nhelp: roles are "
                           + ", ".join(f"`{r}`" for r in ROLES))
        out.append({"role": m["role"], "content": _text(m.get("content"), where, i)})
    if need_user and not any(m["role"] == "user" for m in out):
        raise RowError(f"{where}: the chat list has no user turn\nhelp: give at least one {{\"role\": \"user\"}} "
                       "message")
    return tuple(out)


def _prompt(row: Mapping[str, Any], fields: Mapping[str, str], where: str) -> tuple[str, tuple | None]:
    column, value = prompt_value(row, fields)
    if value is MISSING:
        have = ", ".join(f"`{k}`" for k in sorted(row)) or "none"
        raise RowError(f"{where}: no prompt column `{column}` (columns: {have})\n"
                       f'help: map the prompt column, e.g. jsonl("...", prompt = "question"); rows of inline([...]) '
                       "use the keys `prompt` and `answer`")
    if isinstance(value, str):
        return value, None
    if isinstance(value, list):
        messages = chat_list(value, where)
        return [m["content"] for m in messages if m["role"] == "user"][-1], messages
    raise RowError(f"{where}: prompt column `{column}` must be a string or a chat list, found "
                   f"{type(value).__name__}")


def row_to_sample(row: Any, fields: Mapping[str, str], domain: str, split: str, index: int, *,
                  where: str) -> Sample:
    """The Sample of one row; every unmapped top-level column and every mapped role other than prompt and
    answer is kept in ``meta`` (under the role's name), so rewards and SFT can read it.

    Raises:
        RowError: not an object, no prompt, a malformed chat list.
    """
    if not isinstance(row, dict):
        raise RowError(f"{where}: expected a JSON object, found {type(row).__name__}")
    cols = columns(fields)
    prompt, messages = _prompt(row, fields, where)
    meta = meta_of(row, fields)
    answer = get_path(row, cols[ANSWER], None)
    sample_id = str(get_path(row, cols.get("id", "id"), index))
    return Sample(id=f"{domain}/{split}/{sample_id}", domain=domain, prompt=prompt, answer=answer, meta=meta,
                  messages=messages)
