"""Chat rendering of prompts (rollouts, evals) and of whole conversations (SFT).

A prompt is the chat template applied to the conversation up to its last non-assistant turn (``[system?,
user]`` for a text prompt; every turn of a chat-list prompt) with the generation prompt, followed by the
stage's mode prefix (Nemotron-Cascade 2 §3.1.2: ``<think>\\n`` opens a thinking answer, an empty
``<think></think>`` block selects the non-thinking mode; ``none`` adds nothing, for models without modes).
The prefix is part of the prompt: it is pre-filled at generation time and never trained on.

The template is the tokenizer's own unless ``ChatTemplate.template`` replaces it; ``ChatTemplate.kwargs``
(``enable_thinking``, ...) are passed to it. A domain's or stage's ``ChatOverride`` is merged in by
:func:`resolve_chat`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cascadec.contract.errors import UserError
from cascadec.contract.plan import ChatOverride, ChatTemplate

Mode = Literal["thinking", "no_thinking", "none"]
Message = dict[str, str]


class ChatError(UserError, ValueError):
    """The tokenizer cannot render a conversation (no chat template, no EOS token, a template whose rendering
    of earlier turns changes when a turn is added)."""


def resolve_chat(chat: ChatTemplate, *overrides: ChatOverride | None) -> ChatTemplate:
    """``chat`` with each override applied in order (later wins; template kwargs are merged)."""
    for o in overrides:
        if o is not None:
            chat = chat.model_copy(update={"template": o.template or chat.template,
                                           "kwargs": {**chat.kwargs, **o.kwargs},
                                           "system": o.system or chat.system})
    return chat


def mode_prefix(chat: ChatTemplate, mode: Mode) -> str:
    """The text pre-filled after the generation prompt for ``mode``."""
    if mode == "thinking":
        return chat.thinking
    if mode == "no_thinking":
        return chat.no_thinking
    return ""


def apply_template(tokenizer: Any, chat: ChatTemplate, messages: Sequence[Message], *, generation: bool) -> str:
    """The template (``chat.template`` or the tokenizer's) rendered on ``messages``, with ``chat.kwargs``.

    Raises:
        ChatError: no template at all, or the template fails to render.
    """
    if chat.template is None and getattr(tokenizer, "chat_template", None) is None:
        raise ChatError(
            "the tokenizer has no chat template\n"
            "help: use an instruct model, a tokenizer directory whose tokenizer_config.json has `chat_template`, "
            "or give one with `chat = template(jinja = \"...\")`"
        )
    try:
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation,
                                             chat_template=chat.template, **chat.kwargs)
    except Exception as e:  # jinja raises TemplateError, UndefinedError, TypeError, ...; all are template bugs
        raise ChatError(f"the chat template failed to render: {type(e).__name__}: {e}\n"
                        "help: check the template (and its kwargs) on a conversation of the data") from None


def conversation(prompt: str, messages: Sequence[Message] | None, system: str | None) -> list[Message]:
    """The turns of a sample: its chat list, or one user turn; ``system`` is added first unless the chat list
    has its own system turn (the data's system prompt is the more specific one)."""
    turns = list(messages) if messages else [{"role": "user", "content": prompt}]
    if system and not any(m["role"] == "system" for m in turns):
        turns.insert(0, {"role": "system", "content": system})
    return turns


def prompt_turns(turns: Sequence[Message]) -> list[Message]:
    """The turns a rollout continues: everything up to the last non-assistant turn."""
    end = len(turns)
    while end and turns[end - 1]["role"] == "assistant":
        end -= 1
    return list(turns[:end])


def render_messages(tokenizer: Any, chat: ChatTemplate, mode: Mode, turns: Sequence[Message]) -> str:
    """The full prompt text for a conversation: template + generation prompt + mode prefix."""
    return apply_template(tokenizer, chat, prompt_turns(turns), generation=True) + mode_prefix(chat, mode)


def render_prompt(tokenizer: Any, chat: ChatTemplate, mode: Mode, system: str | None, prompt: str,
                  messages: Sequence[Message] | None = None) -> str:
    """The full prompt text of one sample (its chat list when given, else one user turn ``prompt``).

    Raises:
        ChatError: no chat template, or it fails to render.
    """
    return render_messages(tokenizer, chat, mode, conversation(prompt, messages, system))


@dataclass
class SFTExample:
    """One tokenised SFT conversation: ``input_ids`` and ``loss_mask`` (1 on every assistant turn's tokens up
    to and including the token that ends the turn; 0 on everything else, the mode prefix included).
    ``truncated`` is true when it was cut to ``max_seq`` tokens (the cut removes tokens from the end)."""

    input_ids: list[int]
    loss_mask: list[int]
    truncated: bool


def _turn_pieces(tokenizer: Any, chat: ChatTemplate, turns: Sequence[Message], i: int, done: str) -> tuple[str, str, str]:
    """(untrained text before, trained text, rendered text so far) for the earlier assistant turn ``i``.

    ``done`` is what earlier turns rendered; the template must render it unchanged as the start of the longer
    conversation (prefix stability), or the turns could not be cut apart.
    """
    head = apply_template(tokenizer, chat, turns[:i], generation=True)
    full = apply_template(tokenizer, chat, turns[:i + 1], generation=False)
    if not head.startswith(done) or not full.startswith(head):
        raise ChatError(
            f"the chat template renders the turns before assistant turn {i + 1} differently once it is added "
            "(it is not prefix-stable), so the assistant turns cannot be cut out for the loss\n"
            "help: give a template that renders earlier turns unchanged (`cascadec lint` checks it), or train on "
            "single-turn rows")
    segment = full[len(head):]
    eos = tokenizer.eos_token or ""
    cut = segment.rfind(eos) + len(eos) if eos and eos in segment else len(segment)
    return head[len(done):], segment[:cut], full[:len(head) + cut]


def render_sft_chat(tokenizer: Any, chat: ChatTemplate, mode: Mode, turns: Sequence[Message], *,
                    max_seq: int) -> SFTExample:
    """Tokenise a conversation that ends with an assistant turn, with loss on every assistant turn.

    The last assistant turn is rendered as a rollout sees it (prompt with generation prompt and mode prefix,
    then its content and the EOS token); each earlier assistant turn is the text the template adds for it,
    up to and including the EOS token. Pieces are tokenised separately and concatenated, so the last prompt's
    tokens are exactly those the rollout engine feeds the model.

    Raises:
        ChatError: no chat template or no EOS token; no final assistant turn; a template that is not
            prefix-stable across turns; a conversation whose last prompt alone reaches ``max_seq``.
    """
    if tokenizer.eos_token_id is None:
        raise ChatError("the tokenizer has no EOS token, so an SFT completion cannot be terminated\n"
                        "help: set `eos_token` in the tokenizer's tokenizer_config.json")
    if not turns or turns[-1]["role"] != "assistant":
        raise ChatError("an SFT conversation must end with an assistant turn\n"
                        "help: give the completion as the last assistant message, or a `completion` column")
    pieces: list[tuple[str, int]] = []
    done = ""
    last = len(turns) - 1
    for i in range(last):
        if turns[i]["role"] == "assistant":
            before, trained, done_next = _turn_pieces(tokenizer, chat, turns, i, done)
            pieces += [(before, 0), (trained, 1)]
            done = done_next
    prompt = render_messages(tokenizer, chat, mode, turns[:last])
    if not prompt.startswith(done):
        raise ChatError("the chat template renders earlier turns differently in the last prompt (it is not "
                        "prefix-stable)\nhelp: give a template that renders earlier turns unchanged")
    pieces.append((prompt[len(done):], 0))
    ids: list[int] = []
    mask: list[int] = []
    for text, flag in pieces:
        toks = tokenizer.encode(text, add_special_tokens=False) if text else []
        ids += toks
        mask += [flag] * len(toks)
    if len(ids) >= max_seq:
        raise ChatError(f"an SFT prompt has {len(ids)} tokens, not below max_seq = {max_seq}\n"
                        "help: raise `max_seq` of the SFT stage or shorten the prompts")
    completion = tokenizer.encode(turns[last]["content"], add_special_tokens=False) + [tokenizer.eos_token_id]
    total = len(ids) + len(completion)
    ids, mask = (ids + completion)[:max_seq], (mask + [1] * len(completion))[:max_seq]
    return SFTExample(ids, mask, truncated=total > max_seq)


def render_sft(
    tokenizer: Any, chat: ChatTemplate, mode: Mode, system: str | None, prompt: str, completion: str,
    *, max_seq: int,
) -> SFTExample:
    """One single-turn pair: ``prompt`` (rendered as for generation) then ``completion`` + EOS, loss on the
    completion and EOS only (:func:`render_sft_chat` on ``[system?, user, assistant]``)."""
    turns = conversation(prompt, None, system) + [{"role": "assistant", "content": completion}]
    return render_sft_chat(tokenizer, chat, mode, turns, max_seq=max_seq)
