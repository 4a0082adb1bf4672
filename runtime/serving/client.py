"""A teacher scored over HTTP by an OpenAI-compatible inference server (vLLM's ``/v1/completions``).

For MOPD (Nemotron-Cascade 2 §4.4) a teacher only has to return ``log pi_teacher(y_t | x, y_<t)`` of every
token the student sampled. vLLM computes that as *prompt* log-probs: the request sends prompt + completion as
one list of token ids with ``prompt_logprobs = 0`` and ``max_tokens = 1``; the answer holds, per prompt
position, a dict keyed by the position's own token id (and the top-k others when k > 0), each
``{"logprob": float}``; position 0 has ``None``. Token ids are sent, never text, so the server scores exactly
the student's tokens; :func:`check_server_tokenizer` makes sure its tokenizer maps text to the same ids.

Rows go ``batch_rows`` at a time in one request (vLLM accepts a list of token-id prompts) and up to
``concurrency`` requests are in flight; a request that fails (connection refused or reset, timeout, HTTP 5xx)
is sent again up to ``retries`` times with exponential back-off; then :class:`ServerError` stops the stage.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cascadec.contract.errors import UserError

BATCH_ROWS = 8


class ServerError(UserError, RuntimeError):
    """A teacher or rollout server that cannot be reached, answers with an error, or serves another tokenizer."""


class ServerAnswerError(ServerError):
    """The server answered with an HTTP error ``status`` that a retry does not fix (4xx, or 5xx after the last
    attempt)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """Where a served model answers: ``url`` (``http://host:port``), the served ``model`` name, what to call it
    in messages (``name``, a ``role`` server: ``teacher`` or ``rollout``), and the request policy."""

    url: str
    model: str
    name: str
    timeout_s: float = 300.0
    retries: int = 3
    concurrency: int = 8
    role: str = "teacher"

    @property
    def label(self) -> str:
        """``teacher server `NAME``` (or ``rollout server ...``), for messages."""
        return f"{self.role} server `{self.name}`"


def _post(ep: Endpoint, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(ep.url + path, data=data, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout or ep.timeout_s) as resp:
        return json.loads(resp.read() or b"null")


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    return isinstance(exc, (urllib.error.URLError, OSError, TimeoutError))


def request(ep: Endpoint, path: str, body: dict[str, Any] | None = None, *, retries: int | None = None) -> Any:
    """``POST`` ``body`` (``GET`` when None) to ``ep.url + path`` and return the decoded JSON answer.

    Raises:
        ServerError: after ``retries`` failed attempts (default ``ep.retries``); `ServerAnswerError` at once on
            an HTTP 4xx (or a 5xx on the last attempt), with the server's own message.
    """
    attempts = (ep.retries if retries is None else retries) + 1
    for attempt in range(attempts):
        try:
            return _post(ep, path, body)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            if not _retryable(exc) or attempt == attempts - 1:
                raise ServerAnswerError(f"{ep.label} at {ep.url} answered {path} with HTTP {exc.code}: {detail}"
                                        f"\nhelp: check the server's log; is `{ep.model}` the model it serves?",
                                        exc.code) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            if attempt == attempts - 1:
                reason = getattr(exc, "reason", exc)
                raise ServerError(
                    f"{ep.label} at {ep.url} did not answer {path} after {attempts} attempt(s): "
                    f"{reason}\nhelp: start the server (or check its log: it may have died); the stage stopped "
                    "before its next optimizer step and `cascadec run` resumes it from its last checkpoint"
                ) from None
        time.sleep(min(0.5 * 2**attempt, 8.0))
    raise AssertionError("unreachable")


def _row_logprobs(entries: Sequence[dict[str, Any] | None], ids: Sequence[int], start: int) -> list[float]:
    out = []
    for pos in range(start, len(ids)):
        entry = entries[pos] or {}
        hit = entry.get(str(ids[pos]))
        if hit is None:
            raise ServerError(f"the server's prompt log-probs lack token {ids[pos]} at position {pos}"
                              "\nhelp: serve the model with vLLM (`/v1/completions` with `prompt_logprobs`)")
        out.append(float(hit["logprob"]))
    return out


def score(ep: Endpoint, rows: Sequence[Sequence[int]], starts: Sequence[int], *,
          batch_rows: int = BATCH_ROWS) -> list[list[float]]:
    """``log pi_teacher`` of tokens ``rows[i][starts[i]:]`` given the tokens before them, per row.

    ``rows`` are prompt + completion token ids, ``starts`` each row's prompt length (at least 1). Returns
    one list of ``len(rows[i]) - starts[i]`` floats (nats) per row, in order.

    Raises:
        ServerError: the server failed (see :func:`request`) or answered without prompt log-probs.
    """
    chunks = [list(range(k, min(k + batch_rows, len(rows)))) for k in range(0, len(rows), batch_rows)]

    def one(chunk: list[int]) -> list[list[float]]:
        body = {"model": ep.model, "prompt": [list(rows[i]) for i in chunk], "max_tokens": 1,
                "temperature": 0.0, "prompt_logprobs": 0}
        choices = sorted(request(ep, "/v1/completions", body)["choices"], key=lambda c: c["index"])
        if len(choices) != len(chunk):
            raise ServerError(f"{ep.label} answered {len(choices)} of {len(chunk)} rows")
        return [_row_logprobs(c.get("prompt_logprobs") or [], rows[i], starts[i]) for c, i in zip(choices, chunk)]

    with ThreadPoolExecutor(max_workers=max(1, ep.concurrency)) as pool:
        return [row for part in pool.map(one, chunks) for row in part]


def probe_texts(tokenizer: Any) -> list[str]:
    """Texts whose ids reveal a different tokenizer: every special token, the chat template's markup around a
    message, digits, whitespace runs and non-ASCII text."""
    texts = ["The quick brown fox jumps over 13 lazy dogs: 3.14159, 2**10 = 1024.\n\n  def f(x):\treturn x",
             "Grüße, 東京, مرحبا, 🙂 — naïve café", " ".join(str(s) for s in tokenizer.all_special_tokens)]
    if getattr(tokenizer, "chat_template", None):
        texts.append(tokenizer.apply_chat_template([{"role": "user", "content": "1+1?"}], tokenize=False,
                                                   add_generation_prompt=True))
    return texts


def check_server_tokenizer(ep: Endpoint, tokenizer: Any, student: str) -> None:
    """Check that the server tokenizes like ``tokenizer`` (vLLM's ``/tokenize``) on :func:`probe_texts` and
    decodes ids spread over the whole vocabulary (``/detokenize``) to the same text. ``student`` names the
    tokenizer's model in messages (``student `mopd```, ``the policy of stage `rl```).

    Raises:
        ServerError: unreachable, or a different tokenizer (the first difference is shown).
    """
    for text in probe_texts(tokenizer):
        theirs = request(ep, "/tokenize", {"model": ep.model, "prompt": text, "add_special_tokens": False})["tokens"]
        ours = tokenizer.encode(text, add_special_tokens=False)
        if theirs != ours:
            first = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            raise ServerError(
                f"{ep.label} ({ep.model} at {ep.url}) tokenizes differently from {student}: "
                f"{text[:40]!r} gives {len(theirs)} ids there and {len(ours)} here, first difference at id "
                f"{first}\nhelp: token ids, not text, go to the server, so both must share one tokenizer; serve a "
                "checkpoint of the same cascade (same base model)")
    size = len(tokenizer)
    ids = sorted({min(size - 1, k * max(1, size // 64)) for k in range(65)})
    for i in ids:
        theirs = request(ep, "/detokenize", {"model": ep.model, "tokens": [i]})["prompt"]
        ours = tokenizer.decode([i])
        if theirs != ours:
            raise ServerError(
                f"{ep.label} ({ep.model} at {ep.url}) decodes token {i} as {theirs!r}, {student} as {ours!r}"
                "\nhelp: serve a checkpoint of the same cascade (same base model and tokenizer)")
