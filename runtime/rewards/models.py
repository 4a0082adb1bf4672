"""Model-based rewards: `reward_model(path)` (a Bradley-Terry scalar head) and `judge(model, mode)` (a local
causal LM as a generative judge, pointwise or pairwise over all pairs of a group).

Both score only the answer part of a completion (text after `</think>`), as the Nemotron-Cascade 1 RLHF
stage does (§4.3). Models load on first use, on CUDA when available, in eval mode without gradients.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from cascadec.contract.plan import Origin
from runtime.rewards.base import RewardError, check_batch, groups, resolve, strip_thinking


def _device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_source(source: str, what: str, origin: Origin | None) -> None:
    """A local path must be a saved model directory; anything else is taken as a hub id, resolved on load."""
    local = source.startswith(("./", "../", "/", "~")) or Path(source).exists()
    if local and not (Path(source).expanduser() / "config.json").is_file():
        raise RewardError(f"{what} `{source}` is not a Hugging Face model directory (no config.json)",
                          hint="give a local directory saved with save_pretrained, or a hub id", origin=origin)


def _load_pretrained(loader: Any, source: str, what: str, origin: Origin | None) -> Any:
    try:
        return loader.from_pretrained(source)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RewardError(f"cannot load {what} `{source}`: {first}",
                          hint="download it into the Hugging Face cache or give a local directory",
                          origin=origin) from None


def _chat_text(tokenizer: Any, user: str, assistant: str | None) -> str:
    messages = [{"role": "user", "content": user}]
    if assistant is not None:
        messages.append({"role": "assistant", "content": assistant})
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=assistant is None)
    text = f"User: {user}\n"
    return text + (f"Assistant: {assistant}" if assistant is not None else "Assistant:")


class RewardModelReward:
    """Scalar reward r = head(h_last) of a sequence-classification model with one label (a Bradley-Terry
    reward model, Nemotron-Cascade 1 §4.2), on the chat-formatted (prompt, answer) pair.

    Args:
        model: local model directory or hub id (AutoModelForSequenceClassification, `num_labels == 1`).
        batch_size: pairs per forward pass.
        max_length: tokens kept per pair (truncated from the left, so the answer's end is always seen).
    """

    def __init__(self, model: str, *, batch_size: int = 8, max_length: int = 4096,
                 origin: Origin | None = None) -> None:
        _check_source(model, "reward model", origin)
        self.path, self.batch_size, self.max_length, self.origin = model, batch_size, max_length, origin
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tok = _load_pretrained(AutoTokenizer, self.path, "the tokenizer of reward model", self.origin)
        model = _load_pretrained(AutoModelForSequenceClassification, self.path, "reward model", self.origin)
        if model.config.num_labels != 1:
            raise RewardError(f"reward model `{self.path}` has {model.config.num_labels} labels, not 1",
                              hint="a Bradley-Terry reward model has a single scalar head", origin=self.origin)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        tok.truncation_side = "left"
        # The classification head reads the last non-pad token, found through the config's pad id.
        model.config.pad_token_id = tok.pad_token_id
        self._tokenizer, self._model = tok, model.to(_device()).eval()

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        import torch

        check_batch(samples, completions)
        if self._model is None:
            self._load()
        texts = [_chat_text(self._tokenizer, s.prompt, strip_thinking(c).strip())
                 for s, c in zip(samples, completions)]
        out: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            enc = self._tokenizer(texts[i:i + self.batch_size], return_tensors="pt", padding=True,
                                  truncation=True, max_length=self.max_length).to(self._model.device)
            with torch.no_grad():
                logits = self._model(**enc).logits  # [batch, 1]
            out.extend(logits[:, 0].float().cpu().tolist())
        return out


PAIRWISE_PROMPT = """You are judging two responses to the same user request.

[Request]
{question}
{reference}
[Response 1]
{response_1}

[Response 2]
{response_2}

Rate each response's helpfulness from 1 (poor) to 5 (excellent), then rank them from 1 (Response 1 is much
better) to 6 (Response 2 is much better). Reply with JSON only:
{{"score_1": <1-5>, "score_2": <1-5>, "ranking": <1-6>}}"""

POINTWISE_PROMPT = """You are judging a response to a user request.

[Request]
{question}
{reference}
[Response]
{response}

Rate the response's helpfulness from 1 (poor) to 5 (excellent). Reply with JSON only: {{"score": <1-5>}}"""

# NeMo-Gym genrm_compare defaults: parse failure counts as a neutral comparison.
DEFAULT_SCORE = 3.0
DEFAULT_RANKING = 3.5
RANKING_MIDPOINT = 3.5


def _json_objects(text: str) -> list[dict[str, Any]]:
    found = []
    for m in re.finditer(r"\{[^{}]*\}", text):
        try:
            value = json.loads(m.group(0))
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def parse_pairwise(output: str) -> tuple[float, float, float]:
    """(score_1, score_2, ranking) from the last JSON object holding any of these keys; missing keys and
    unparseable output give the neutral defaults 3.0 / 3.0 / 3.5 (NeMo-Gym genrm_compare)."""
    for obj in reversed(_json_objects(output)):
        if any(k in obj for k in ("score_1", "score_2", "ranking")):
            try:
                return (float(obj.get("score_1", DEFAULT_SCORE)), float(obj.get("score_2", DEFAULT_SCORE)),
                        float(obj.get("ranking", DEFAULT_RANKING)))
            except (TypeError, ValueError):
                continue
    return DEFAULT_SCORE, DEFAULT_SCORE, DEFAULT_RANKING


def parse_pointwise(output: str) -> float:
    for obj in reversed(_json_objects(output)):
        try:
            return float(obj["score"])
        except (KeyError, TypeError, ValueError):
            continue
    return DEFAULT_SCORE


def aggregate_pairwise(n: int, results: Sequence[tuple[int, int, tuple[float, float, float]]]) -> list[float]:
    """Per-response reward = mean of its scores over its comparisons; when a comparison's two scores tie,
    `3.5 − ranking` is added to the first and subtracted from the second (NeMo-Gym genrm_compare
    `simple_tiebreaker`, used by Nemotron-Cascade 2 RLHF). A response without comparisons gets 3.0.

    >>> aggregate_pairwise(2, [(0, 1, (4.0, 4.0, 2.0))])
    [5.5, 2.5]
    """
    total, count = [0.0] * n, [0] * n
    for i, j, (s1, s2, ranking) in results:
        if s1 == s2:
            adj = RANKING_MIDPOINT - ranking
            s1, s2 = s1 + adj, s2 - adj
        total[i] += s1
        total[j] += s2
        count[i] += 1
        count[j] += 1
    return [t / c if c else DEFAULT_SCORE for t, c in zip(total, count)]


class JudgeReward:
    """A generative judge. ``pairwise``: every pair of completions within a group (consecutive completions
    of one sample id) is judged once (C(n, 2) calls) and aggregated by `aggregate_pairwise`; ``pointwise``:
    each completion gets the judge's 1–5 score.

    Args:
        model: local causal-LM directory (or hub id) used as the judge.
        mode: ``pairwise`` or ``pointwise``.
        pairs: pairwise comparison strategy: ``all`` (every pair, C(n, 2) calls, as in Nemotron-Cascade 2) or
            ``circular`` (each completion against the next, n calls; NeMo-Gym genrm_compare).
        reference: optional reference answer shown to the judge, e.g. `{"field": "answer"}`.
        max_new_tokens: judge output budget.
        generate: optional replacement of the model, `fn(prompts: list[str]) -> list[str]` (a callable or a
            `package.module:function` reference), e.g. a served judge or a test double.
    """

    def __init__(self, model: str | None = None, *, mode: Literal["pairwise", "pointwise"] = "pairwise",
                 pairs: Literal["all", "circular"] = "all", reference: Any = None, max_new_tokens: int = 256,
                 generate: Callable[[list[str]], list[str]] | str | None = None,
                 origin: Origin | None = None) -> None:
        if mode not in ("pairwise", "pointwise"):
            raise RewardError(f"reward `judge` has mode `{mode}`", hint="use mode = pairwise or pointwise",
                              origin=origin)
        if pairs not in ("all", "circular"):
            raise RewardError(f"reward `judge` has pairs `{pairs}`", hint="use pairs = \"all\" or \"circular\"",
                              origin=origin)
        if isinstance(generate, str):
            from runtime.rewards.custom import load_function

            generate = load_function(generate, origin)
        if generate is None:
            if model is None:
                raise RewardError("reward `judge` needs a `model`", hint="write judge(\"path/to/model\")",
                                  origin=origin)
            _check_source(model, "judge model", origin)
        self.model_path, self.mode, self.max_new_tokens, self.origin = model, mode, max_new_tokens, origin
        self.pairs, self.reference = pairs, reference
        self._generate = generate
        self._model: Any = None
        self._tokenizer: Any = None

    def _hf_generate(self, prompts: list[str]) -> list[str]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._model is None:
            tok = _load_pretrained(AutoTokenizer, self.model_path, "the tokenizer of judge", self.origin)
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token or tok.unk_token
            tok.padding_side = "left"
            self._tokenizer = tok
            model = _load_pretrained(AutoModelForCausalLM, self.model_path, "judge model", self.origin)
            self._model = model.to(_device()).eval()
        tok = self._tokenizer
        enc = tok([_chat_text(tok, p, None) for p in prompts], return_tensors="pt", padding=True).to(
            self._model.device)
        with torch.no_grad():
            out = self._model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                       pad_token_id=tok.pad_token_id)
        return tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def _ask(self, prompts: list[str]) -> list[str]:
        fn = self._generate or self._hf_generate
        outputs = list(fn(prompts))
        if len(outputs) != len(prompts):
            raise RewardError(f"judge returned {len(outputs)} outputs for {len(prompts)} prompts", origin=self.origin)
        return outputs

    def _reference(self, sample: Any) -> str:
        if self.reference is None:
            return ""
        return f"\n[Reference answer]\n{resolve(self.reference, sample)}\n"

    def _pairs(self, n: int) -> list[tuple[int, int]]:
        if self.pairs == "all" or n < 3:
            return list(itertools.combinations(range(n), 2))
        return [(i, (i + 1) % n) for i in range(n)]

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        answers = [strip_thinking(c).strip() for c in completions]
        if self.mode == "pointwise":
            prompts = [POINTWISE_PROMPT.format(question=s.prompt, reference=self._reference(s), response=a)
                       for s, a in zip(samples, answers)]
            return [parse_pointwise(o) for o in self._ask(prompts)]
        grouped = groups(samples)
        pairs = [(g, i, j) for g, idx in enumerate(grouped) for i, j in self._pairs(len(idx))]
        prompts = [PAIRWISE_PROMPT.format(question=samples[grouped[g][0]].prompt,
                                          reference=self._reference(samples[grouped[g][0]]),
                                          response_1=answers[grouped[g][i]], response_2=answers[grouped[g][j]])
                   for g, i, j in pairs]
        parsed = [parse_pairwise(o) for o in self._ask(prompts)] if prompts else []
        out = [DEFAULT_SCORE] * len(completions)
        for g, idx in enumerate(grouped):
            results = [(i, j, p) for (pg, i, j), p in zip(pairs, parsed) if pg == g]
            for k, score in zip(idx, aggregate_pairwise(len(idx), results)):
                out[k] = score
        return out
