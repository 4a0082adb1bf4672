"""Chat rendering of prompts (rollouts, evals) and of prompt + completion pairs (SFT).

A prompt is the tokenizer's chat template applied to ``[system?, user]`` with the generation prompt, followed
by the stage's mode prefix (Nemotron-Cascade 2 §3.1.2: ``<think>\\n`` opens a thinking answer, an empty
``<think></think>`` block selects the non-thinking mode; ``none`` adds nothing, for models without modes).
The prefix is part of the prompt: it is pre-filled at generation time and never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cascadec.contract.errors import UserError
from cascadec.contract.plan import ChatTemplate

Mode = Literal["thinking", "no_thinking", "none"]


class ChatError(UserError, ValueError):
    """The tokenizer cannot render a conversation (no chat template, no EOS token)."""


def mode_prefix(chat: ChatTemplate, mode: Mode) -> str:
    """The text pre-filled after the generation prompt for ``mode``."""
    if mode == "thinking":
        return chat.thinking
    if mode == "no_thinking":
        return chat.no_thinking
    return ""


def render_prompt(tokenizer: Any, chat: ChatTemplate, mode: Mode, system: str | None, prompt: str) -> str:
    """The full prompt text for one user turn: chat template + generation prompt + mode prefix.

    Raises:
        ChatError: the tokenizer has no chat template.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ChatError(
            "the tokenizer has no chat template\n"
            "help: use an instruct model, or a tokenizer directory whose tokenizer_config.json has `chat_template`"
        )
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + mode_prefix(chat, mode)


@dataclass
class SFTExample:
    """One tokenised SFT pair: ``input_ids`` (prompt then completion) and ``loss_mask`` (1 on the assistant's
    completion tokens, including the closing EOS; 0 on the prompt and the mode prefix). ``truncated`` is true
    when the pair was cut to ``max_seq`` tokens (the cut removes completion tokens from the end)."""

    input_ids: list[int]
    loss_mask: list[int]
    truncated: bool


def render_sft(
    tokenizer: Any, chat: ChatTemplate, mode: Mode, system: str | None, prompt: str, completion: str,
    *, max_seq: int,
) -> SFTExample:
    """Tokenise ``prompt`` (rendered as for generation) and ``completion`` + EOS, with an assistant mask.

    The two parts are tokenised separately and concatenated, so the prompt tokens are exactly those the
    rollout engine feeds the model, and the completion ends with the EOS token that stops generation (for
    ChatML templates ``<|im_end|>``, the end of the assistant turn).

    Raises:
        ChatError: no chat template or no EOS token; a prompt alone longer than ``max_seq``.
    """
    if tokenizer.eos_token_id is None:
        raise ChatError("the tokenizer has no EOS token, so an SFT completion cannot be terminated\n"
                        "help: set `eos_token` in the tokenizer's tokenizer_config.json")
    prompt_ids = tokenizer.encode(render_prompt(tokenizer, chat, mode, system, prompt), add_special_tokens=False)
    completion_ids = tokenizer.encode(completion, add_special_tokens=False) + [tokenizer.eos_token_id]
    if len(prompt_ids) >= max_seq:
        raise ChatError(f"an SFT prompt has {len(prompt_ids)} tokens, not below max_seq = {max_seq}\n"
                        "help: raise `max_seq` of the SFT stage or shorten the prompts")
    ids = (prompt_ids + completion_ids)[:max_seq]
    mask = ([0] * len(prompt_ids) + [1] * len(completion_ids))[:max_seq]
    return SFTExample(ids, mask, truncated=len(prompt_ids) + len(completion_ids) > max_seq)
