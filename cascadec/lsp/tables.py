"""The one adapter between the language server and the compiler's tables of keys and kinds.

Completion and hover read only `key_tables()`. Today it reads `cascadec.model` (keys), `cascadec.reward_args`
(reward arguments) and `cascadec.tracking` (trackers); when those move into a single registry of kinds, only
this function changes. Docs lines are built from the same entries the checks use (type, choices, where the
value lands in the plan, its default), so hover cannot drift from what the compiler accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Tables:
    """Docs lines by name. ``stage`` maps a stage kind to its keys; the other maps are one block each."""

    stage: dict[str, dict[str, str]]
    resources: dict[str, str]
    domain: dict[str, str]
    eval: dict[str, str]
    cascade: dict[str, str]
    stage_kinds: dict[str, str]
    reward_kinds: dict[str, str]
    trackers: dict[str, str]
    choices: dict[str, tuple[str, ...]]  # enum-valued key → its values (any block)


@lru_cache(maxsize=1)
def key_tables() -> Tables:
    """Every key and kind the language accepts, with a one-line doc each."""
    from cascadec import model, plan
    from cascadec.reward_args import ARGS
    from cascadec.tracking import TRACKER_DOCS

    defaults = {"sft": plan.SFTParams, "grpo": plan.GRPOParams, "distill": plan.DistillParams}
    stage = {kind: {name: _key_doc(name, key, defaults[kind]) for name, key in model.stage_keys(kind).items()}
             for kind in model.STAGE_KINDS}
    choices = {name: key.choices for table in (*model.STAGE_KEYS.values(), model.RESOURCE_KEYS, model.EVAL_KEYS)
               for name, key in table.items() if key.choices}
    return Tables(
        stage=stage,
        resources={name: _key_doc(name, key, plan.GRPOParams) for name, key in model.RESOURCE_KEYS.items()},
        domain={name: _DOMAIN[name] for name in model.DOMAIN_KEYS},
        eval={name: _key_doc(name, key, None) for name, key in model.EVAL_KEYS.items()},
        cascade={name: _CASCADE[name] for name in model.CASCADE_KEYS},
        stage_kinds={kind: f"stage kind `{kind}`: keys " + ", ".join(sorted(stage[kind])) for kind in stage},
        reward_kinds={kind: _reward_doc(kind, args) for kind, args in ARGS.items()},
        trackers=dict(TRACKER_DOCS),
        choices={**choices, "overlong": model.OVERLONG, "tracking": plan.TRACKERS},
    )


_DOMAIN = {
    "train": "training prompts: `gym(...)`, `jsonl(...)`, `hf_disk(...)` or `inline(...)`",
    "reward": "how completions of this domain are scored, e.g. `math_verify()`",
    "overlong": "what happens to a response cut at `max_response`: none, penalty (reward 0) or filter (dropped)",
    "system": "a system prompt for this domain's prompts",
}
_CASCADE = {
    "seed": "the cascade's seed (each stage's default `seed`)",
    "base": 'the base model: `model("org/name")`, a local path, or `model(packaged("smollm2-135m-instruct"))`',
    "chat": "the chat template's thinking/no-thinking prefixes and system prompt: `template(...)`",
    "tracking": "experiment trackers each stage streams to: [tensorboard, wandb, mlflow, trackio]",
}


def _default(params: type[BaseModel] | None, target: tuple[str, ...]) -> Any:
    """The plan's default for the field at ``target`` (a path below a stage, or below an eval spec when
    ``params`` is None), or None when the field is required."""
    from cascadec import plan

    model: Any = (params if target[0] == "params" else plan.Stage) if params else plan.EvalSpec
    parts = target[1:] if target[0] == "params" else target
    for i, part in enumerate(parts):
        info = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if info is None:
            return None
        if i < len(parts) - 1:
            model = info.annotation
            continue
        if info.is_required():
            return None
        value = info.get_default(call_default_factory=True)
        return value.model_dump() if isinstance(value, BaseModel) else value
    return None


def _key_doc(name: str, key: Any, params: type[BaseModel] | None) -> str:
    kind = "|".join(key.choices) if key.choices else key.kind
    default = _default(params, key.target)
    shown = "" if default is None else f", default {default}"
    return f"`{name}` ({kind}{shown}) sets `{'.'.join(key.target)}`"


def _reward_doc(kind: str, args: dict[str, Any]) -> str:
    shown = [("" if a.positional else f"{n} = ") + ("|".join(a.choices) if a.choices else a.kind)
             + ("" if a.required else "?") for n, a in args.items()]
    return f"reward `{kind}({', '.join(shown)})`"
