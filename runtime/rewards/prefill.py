"""Template checks that need the real chat template, run by `cascadec lint --check-rewards`:

- CAS501: a format-style reward expects text at the start of the completion that the prompt pre-fills. The
  generation prompt of the template (Qwen3's ``<think>\\n\\n</think>`` with ``enable_thinking = false``) and
  the stage's mode prefix (``<think>\\n``) are part of the prompt, so no completion starts with them. A
  reward is "format-style" here when it scores a completion higher with the pre-filled text in front than
  without it, on completions shaped as a model would write them after the pre-fill.
- CAS502: the template is not prefix-stable on the domain's multi-turn rows: rendering turns 1..k is not a
  prefix of rendering turns 1..k+1 (some templates drop earlier turns' reasoning), so SFT cannot cut out the
  assistant turns and a rollout's prompt differs from the conversation it continues.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cascadec.contract.plan import ChatOverride, ChatTemplate, Plan
from runtime.chat import ChatError, apply_template, conversation, mode_prefix, resolve_chat
from runtime.rewards.contracts import Problem, tiny_batch

_THINK = "<think>"


def _tokenizer(plan: Plan) -> Any | None:
    """The base model's tokenizer, or None when it cannot be loaded here (an uncached hub id)."""
    from runtime.models import ModelLoadError, load_tokenizer

    ref = plan.base
    name = ref.tokenizer or ("bytes" if ref.kind == "tiny" else ref.name)
    try:
        return load_tokenizer(name)
    except (ModelLoadError, OSError, ValueError):
        return None


def generation_prefill(tokenizer: Any, chat: ChatTemplate, mode: str) -> str:
    """What the prompt pre-fills after the last user turn: the template's generation prompt (the assistant
    header and anything after it) and the mode prefix."""
    turns = [{"role": "user", "content": "Q"}]
    head = apply_template(tokenizer, chat, turns, generation=True)
    plain = apply_template(tokenizer, chat, turns, generation=False)
    return (head[len(plain):] if head.startswith(plain) else head) + mode_prefix(chat, mode)  # type: ignore[arg-type]


def _bodies(gold: str) -> list[str]:
    """Completions as a model writes them after a pre-filled ``<think>``: the rest of the reasoning, the
    closing tag, and the answer in common formats."""
    return [f"work\n</think>\n<answer>\n{gold}\n</answer>", f"work\n</think>\n<answer>{gold}</answer>",
            f"work\n</think>\nThe answer is \\boxed{{{gold}}}."]


def _prefill_problem(name: str, domain: Any, reward: Any, sample: Any, prefill: str, where: str) -> Problem | None:
    cut = prefill[prefill.index(_THINK):]
    gold = sample.answer if isinstance(sample.answer, (str, int, float)) else "2"
    for body in _bodies(str(gold)):
        without, with_text = reward([sample, sample], [body, cut + body])
        if with_text > without:
            return Problem(name, domain.reward.kind,
                           f"it scores completions that start with {cut!r} higher ({with_text:g} vs {without:g}), "
                           f"but {where} pre-fills {cut!r}, so no completion starts with it", code="CAS501",
                           hint="make the reward accept completions that begin after the pre-filled text (prepend "
                                "it before matching), or pre-fill less (`mode = none`, or a template without it)",
                           origin=domain.reward.origin or domain.origin)
    return None


def _unstable(tokenizer: Any, chat: ChatTemplate, turns: list[dict[str, str]]) -> int | None:
    """The first turn k (1-based) whose rendering is not a prefix of the rendering with turn k+1, or None."""
    previous = None
    for k in range(1, len(turns) + 1):
        text = apply_template(tokenizer, chat, turns[:k], generation=False)
        if previous is not None and not text.startswith(previous):
            return k - 1
        previous = text
    return None


def _chats(plan: Plan, name: str) -> Iterator[tuple[ChatTemplate, str, str]]:
    """(resolved chat, mode, what pre-fills it) for each stage that trains on domain ``name``."""
    d = plan.domains[name]
    seen = set()
    for st in plan.stages:
        if name not in st.domains or st.kind == "sft":
            continue
        system = ChatOverride(system=d.system) if d.system else None
        chat = resolve_chat(plan.chat, system, d.chat, st.chat)
        key = (chat.model_dump_json(), st.mode)
        if key not in seen:
            seen.add(key)
            yield chat, st.mode, f"the prompt of stage `{st.name}` (template and `mode = {st.mode}`)"


def _domain_problems(plan: Plan, name: str, tokenizer: Any) -> Iterator[Problem]:
    from runtime.rewards import build_reward

    domain = plan.domains[name]
    samples, _ = tiny_batch(name, domain, 2)
    chats = list(_chats(plan, name))
    prefills = [(generation_prefill(tokenizer, c, m), w) for c, m, w in chats]
    kind = domain.reward.kind if domain.reward else "none"
    if domain.reward is not None and any(_THINK in p for p, _ in prefills):
        reward = build_reward(domain.reward, domain=domain)
        for prefill, where in prefills:
            if _THINK in prefill and (found := _prefill_problem(name, domain, reward, samples[0], prefill, where)):
                yield found
                break
    for chat, _, _ in chats[:1] or [(resolve_chat(plan.chat, None, domain.chat), "none", "")]:
        for s in samples:
            turns = conversation(s.prompt, s.messages, chat.system)
            k = _unstable(tokenizer, chat, turns) if len(turns) > 2 else None
            if k is not None:
                yield Problem(name, kind, f"the chat template renders turn {k} of `{s.id}` differently "
                              f"once turn {k + 1} follows (not prefix-stable)", code="CAS502",
                              hint="use a template that renders earlier turns unchanged, or single-turn rows; SFT "
                                   "stops on such rows", origin=domain.origin)
                break


def template_problems(plan: Plan) -> list[Problem]:
    """CAS501 and CAS502 warnings of every domain (none when the base tokenizer is not available here)."""
    tokenizer = _tokenizer(plan)
    if tokenizer is None:
        return []
    out = []
    for name in sorted(plan.domains):
        try:
            out.extend(_domain_problems(plan, name, tokenizer))
        except ChatError as e:
            message, _, hint = str(e).partition("\nhelp: ")
            reward = plan.domains[name].reward
            out.append(Problem(name, reward.kind if reward else "none", message, hint or None,
                               plan.domains[name].origin, code="CAS502"))
    return out
