"""pydantic ``ValidationError`` → diagnostics at the span of the value that produced each error (CAS201
ranges, CAS203 missing values)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cascadec.codes import make
from cascadec.contract.kinds import STAGE_KINDS
from cascadec.diagnostics import Diagnostic, Span
from cascadec.model.convert import SAMPLED_METRIC

Spans = dict[tuple[Any, ...], tuple[Span, str]]

# plan field → the key a user writes, for messages about fields the user did not set
_FIELD_WORDS = {"optim": "lr", "nnodes": "nodes", "nproc_per_node": "gpus", "memory_per_gpu_bytes": "memory_per_gpu",
                "warmup_start": "warmup_from"}


def _locate(spans: Spans, loc: tuple[Any, ...], fallback: Span) -> tuple[Span, str]:
    # the discriminated union adds the tag (`grpo`) after `params`; our table has no such level
    if len(loc) > 3 and loc[0] == "stages" and loc[2] == "params" and loc[3] in STAGE_KINDS:
        loc = loc[:3] + loc[4:]
    for n in range(len(loc), 0, -1):
        if loc[:n] in spans:
            span, key = spans[loc[:n]]
            rest = [part for part in loc[n:] if isinstance(part, str)]
            # a tuple element (`betas`, index 1) keeps the key; a missing field names the field
            return span, rest[-1] if rest else key
    return fallback, str(loc[-1]) if loc else "spec"


def validation_diagnostics(spans: Spans, exc: ValidationError, fallback: Span) -> list[Diagnostic]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        span, key = _locate(spans, loc, fallback)
        key = _FIELD_WORDS.get(key, key)
        if err["type"] == "missing":
            where = "stage" if loc[:1] == ("stages",) else "domain" if loc[:1] == ("domains",) else "cascade"
            fix = {"lr": "set `lr = 3e-6` in the stage or in its `defaults` block",
                   "train": 'set `train = jsonl("data/x.jsonl")`', "reward": "set `reward = math_verify()`",
                   "base": 'set `base = model("org/name")`'}.get(key, f"set `{key}`")
            out.append(make("CAS203", f"missing `{key}` in this {where}", span, label=f"`{key}` is not set",
                            help=fix))
            continue
        if err["type"] in _BOUND_WORDS:
            out.append(_range_diagnostic(key, err, span))
            continue
        msg = err["msg"].replace("Value error, ", "")
        msg = msg[0].lower() + msg[1:] if msg else msg
        code = "CAS201" if err["type"] == "value_error" else "CAS200"
        out.append(make(code, f"invalid `{key}`: {msg}", span, label="this value",
                        help=_RANGE_HELP.get(key, "see the ranges in docs/language.md")))
    # one written value can reach several fields (a cascade seed is every stage's seed): report it once
    return list(dict.fromkeys(out))


# pydantic error type → (words before the bound, its key in the error's ``ctx``)
_BOUND_WORDS = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
                "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}

# a lower bound the model lets through but a later check refuses (CAS401 zero steps, CAS402 a GRPO group of
# one; a distill stage may sample one rollout per prompt): the message names the bound the user must really
# meet. Keys: (stage kind, key), None for every kind.
_LOWEST_ACCEPTED = {(None, "steps"): 1, ("grpo", "rollouts_per_prompt"): 2}
_LOWEST_HELP = {("grpo", "rollouts_per_prompt"):
                "a GRPO group needs at least 2 rollouts to have an advantage; the papers use 8 or 16"}


def _range_diagnostic(key: str, err: Any, span: Span) -> Diagnostic:
    """CAS201 for a value outside its field's bound, worded as `` `steps` must be at least 1, found -3``."""
    words, bound_key = _BOUND_WORDS[err["type"]]
    bound = err["ctx"][bound_key]
    kind = "grpo" if "grpo" in err["loc"] else None  # a stage's params are tagged by kind in the error's loc
    lowest = _LOWEST_ACCEPTED.get((kind, key), _LOWEST_ACCEPTED.get((None, key)))
    if bound_key == "ge" and lowest is not None:
        bound = max(bound, lowest)
    limit, found = _number(bound), _number(err["input"])
    subject = "the K of `metric = pass@K` or `avg@K`" if key == "metric" else f"`{key}`"
    help_ = _LOWEST_HELP.get((kind, key)) or _RANGE_HELP.get(key, f"use a `{key}` {words} {limit}")
    return make("CAS201", f"{subject} must be {words} {limit}, found {found}", span, label=f"{words} {limit}",
                help=help_)


def _number(x: Any) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


_RANGE_HELP = {
    "top_p": "`top_p` lies in (0, 1]; 1.0 disables nucleus sampling",
    "lr": "learning rates must be positive, e.g. `lr = 3e-6`",
    "temperature": "`temperature` is at least 0; 0 is greedy decoding",
    "is_band": "MOPD keeps tokens whose importance ratio lies in the band; the paper uses `is_band = (0.5, 2.0)`",
    "weight": "mixture weights must be positive; they are normalised to sum 1",
    "betas": "Adam betas lie in [0, 1), e.g. `betas = (0.9, 0.95)`",
    "steps": "give the stage at least one optimizer step, e.g. `steps = 100`",
    "size": "`size` is how many problems the generator makes, e.g. `size = 2000`",
    "metric": f"K counts the samples per prompt: write e.g. `metric = pass@1`, or {SAMPLED_METRIC} (samples "
              "at temperature 0 are all the same)",
    "max_tokens": "`max_tokens` caps the tokens of each sampled answer, e.g. `max_tokens = 512`",
    "kl": "`kl` weighs the reverse-KL penalty to the reference; 0 turns it off",
    "entropy": "`entropy` weighs the entropy bonus; 0 turns it off",
    "seed": "seeds are whole numbers from 0 up, e.g. `seed = 1`",
    "jsd_beta": "`jsd_beta` lies in [0, 1]: 0 is forward KL, 1 reverse KL",
}
