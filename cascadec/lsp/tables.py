"""The one adapter between the language server and the compiler's tables of keys and kinds.

Completion and hover read only `key_tables()`, which reads the registry of kinds (`cascadec.contract.kinds`:
stage kinds with their keys and docs lines, reward kinds with their arguments and docs lines), the keys outside
it (`cascadec.model.keys`) and the trackers (`cascadec.tracking`). A key's docs line is built from the same
entry the checks use (type, choices, where the value lands in the plan, its default), so hover cannot drift
from what the compiler accepts.
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
    from cascadec.contract import kinds, plan
    from cascadec.model import keys
    from cascadec.overlong import RULES
    from cascadec.tracking import TRACKER_DOCS

    stage = {name: {key: _key_doc(key, spec, kind.params) for key, spec in kind.all_keys().items()}
             for name, kind in kinds.STAGE_KINDS.items()}
    choices = {name: spec.choices for table in (*(k.all_keys() for k in kinds.STAGE_KINDS.values()),
                                                 keys.RESOURCE_KEYS, keys.EVAL_KEYS)
               for name, spec in table.items() if spec.choices}
    return Tables(
        stage=stage,
        resources={name: _key_doc(name, spec, plan.GRPOParams) for name, spec in keys.RESOURCE_KEYS.items()},
        domain={name: _DOMAIN[name] for name in keys.DOMAIN_KEYS},
        eval={name: _key_doc(name, spec, None) for name, spec in keys.EVAL_KEYS.items()},
        cascade={name: _CASCADE[name] for name in keys.CASCADE_KEYS},
        stage_kinds={name: f"stage kind `{name}`: {kind.doc}" for name, kind in kinds.STAGE_KINDS.items()},
        reward_kinds={name: f"{_reward_signature(name, kind.args)}: {kind.doc}"
                      for name, kind in kinds.REWARD_KINDS.items()},
        trackers=dict(TRACKER_DOCS),
        choices={**choices, "overlong": RULES, "tracking": plan.TRACKERS},
    )


_DOMAIN = {
    "train": "training prompts: `jsonl(...)`, `parquet(...)`, `arrow(...)`, `csv(...)`, `json(...)`, `hf(...)`, "
             "`hf_disk(...)`, `gym(...)` or `inline(...)`",
    "reward": "how completions of this domain are scored, e.g. `math_verify()`",
    "overlong": "what happens to a long response: none, penalty or penalty(V) (reward V when cut), filter "
                "(dropped from the loss), soft(buffer = N, factor = F) (DAPO's length penalty)",
    "system": "a system prompt for this domain's prompts",
    "chat": "this domain's template override: `template(system = ..., jinja = ... | file = ..., kwargs = {...})`",
    "decontaminate": "on|off, default off: drop the training rows whose prompt (whitespace collapsed) equals an "
                     "item of this domain's evals",
}
_CASCADE = {
    "seed": "the cascade's seed (each stage's default `seed`)",
    "base": 'the base model: `model("org/name")`, a local path, or `model(packaged("smollm2-135m-instruct"))`',
    "chat": "the chat template: thinking/no-thinking prefixes, system prompt, `jinja`/`file`, `kwargs`: "
            "`template(...)`",
    "checkpoints": "checkpoints this file does not train, usable as parents and teachers: "
                   '`{ name = model("org/id"), prev = run("../runs/x", stage = "sft") }`',
    "tracking": "experiment trackers each stage streams to: [tensorboard, wandb, mlflow, trackio]",
}


def _default(params: type[BaseModel] | None, target: tuple[str, ...]) -> Any:
    """The plan's default for the field at ``target`` (a path below a stage, or below an eval spec when
    ``params`` is None), or None when the field is required."""
    from cascadec.contract import plan

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


def _reward_signature(kind: str, args: dict[str, Any]) -> str:
    shown = [("" if a.positional else f"{n} = ") + ("|".join(a.choices) if a.choices else a.kind)
             + ("" if a.required else "?") for n, a in args.items()]
    return f"reward `{kind}({', '.join(shown)})`"
