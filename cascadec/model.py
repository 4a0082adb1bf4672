"""Typed input model: pydantic v2 models (``extra="forbid"``) built from the AST.

The input models subclass the plan models of `cascadec.contract.plan` and add the ranges a user can get wrong
(``lr > 0``, ``0 < top_p <= 1``, ...), so their defaults are the plan's defaults by construction. Building
goes in two steps: AST values are converted per key (types, units: CAS200/CAS202/CAS104), then pydantic
validates; every ``ValidationError`` location is mapped back to the span of the value that produced it
(CAS201 ranges, CAS203 missing values). `json_schema()` exports the schema of a whole spec.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Union

from pydantic import BaseModel, Field, ValidationError, field_validator

from cascadec import ast
from cascadec.contract import plan
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic, Span
from cascadec.reward_args import check_reward_args
from cascadec.contract.suggest import did_you_mean
from cascadec.units import as_number, scale, unit_help

# ---------------------------------------------------------------- input models

Positive = Annotated[float, Field(gt=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]
Count = Annotated[int, Field(ge=1)]
TopP = Annotated[float, Field(gt=0, le=1)]


def _default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].default


class ScheduleIn(plan.Schedule):
    peak: Positive
    end: Annotated[float, Field(ge=0)] | None = None
    warmup: Annotated[int, Field(ge=0)] = 0
    warmup_start: Annotated[float, Field(ge=0)] = 0.0


class OptimIn(plan.Optim):
    lr: ScheduleIn
    betas: tuple[Beta, Beta] = _default(plan.Optim, "betas")
    weight_decay: Annotated[float, Field(ge=0)] = _default(plan.Optim, "weight_decay")
    grad_clip: Positive = _default(plan.Optim, "grad_clip")
    eps: Positive = _default(plan.Optim, "eps")


class SFTIn(plan.SFTParams):
    optim: OptimIn
    steps: Annotated[int, Field(ge=0)]
    batch_size: Count = _default(plan.SFTParams, "batch_size")
    micro_batch: Count = _default(plan.SFTParams, "micro_batch")
    max_seq: Count = _default(plan.SFTParams, "max_seq")
    epochs: Positive | None = None


class GRPOIn(plan.GRPOParams):
    optim: OptimIn
    steps: Annotated[int, Field(ge=0)]
    prompts_per_step: Count = _default(plan.GRPOParams, "prompts_per_step")
    rollouts_per_prompt: Count = _default(plan.GRPOParams, "rollouts_per_prompt")
    micro_batch: Count = _default(plan.GRPOParams, "micro_batch")
    temperature: Annotated[float, Field(ge=0)] = _default(plan.GRPOParams, "temperature")
    top_p: TopP = _default(plan.GRPOParams, "top_p")
    top_k: Annotated[int, Field(ge=0)] = _default(plan.GRPOParams, "top_k")
    max_prompt: Count = _default(plan.GRPOParams, "max_prompt")
    max_response: Count = _default(plan.GRPOParams, "max_response")
    kl: Annotated[float, Field(ge=0)] = _default(plan.GRPOParams, "kl")
    entropy: Annotated[float, Field(ge=0)] = _default(plan.GRPOParams, "entropy")


class DistillIn(plan.DistillParams):
    optim: OptimIn
    steps: Annotated[int, Field(ge=0)]
    prompts_per_step: Count = _default(plan.DistillParams, "prompts_per_step")
    rollouts_per_prompt: Count = _default(plan.DistillParams, "rollouts_per_prompt")
    micro_batch: Count = _default(plan.DistillParams, "micro_batch")
    temperature: Annotated[float, Field(ge=0)] = _default(plan.DistillParams, "temperature")
    top_p: TopP = _default(plan.DistillParams, "top_p")
    top_k: Annotated[int, Field(ge=0)] = _default(plan.DistillParams, "top_k")
    max_prompt: Count = _default(plan.DistillParams, "max_prompt")
    max_response: Count = _default(plan.DistillParams, "max_response")
    jsd_beta: Annotated[float, Field(ge=0, le=1)] = _default(plan.DistillParams, "jsd_beta")
    kl_top_k: Annotated[int, Field(ge=0)] = _default(plan.DistillParams, "kl_top_k")

    @field_validator("is_band")
    @classmethod
    def _band(cls, band: tuple[float, float]) -> tuple[float, float]:
        # MOPD's truncated importance weight keeps tokens with low <= ratio <= high (Nemotron-Cascade 2 §4.4)
        if not band[0] < 1.0 < band[1]:
            raise ValueError(f"needs low < 1 < high, got ({band[0]}, {band[1]})")
        return band


class ResourcesIn(plan.Resources):
    nnodes: Count = _default(plan.Resources, "nnodes")
    nproc_per_node: Count = _default(plan.Resources, "nproc_per_node")
    memory_per_gpu_bytes: Annotated[int, Field(gt=0)] | None = None


class ConditionIn(plan.Condition):
    patience: Annotated[int, Field(ge=0)] = 0
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class StageIn(plan.Stage):
    domains: dict[str, Positive]
    params: Annotated[Union[SFTIn, GRPOIn, DistillIn], Field(discriminator="kind")]
    until: list[ConditionIn] = Field(default_factory=list)
    eval_every: Annotated[int, Field(ge=0)] = _default(plan.Stage, "eval_every")
    save_every: Annotated[int, Field(ge=0)] = _default(plan.Stage, "save_every")
    seed: Annotated[int, Field(ge=0)] = 0
    resources: ResourcesIn = Field(default_factory=ResourcesIn)


class DataIn(plan.DataSource):
    size: Count | None = None
    seed: Annotated[int, Field(ge=0)] = 0


class RewardIn(plan.RewardSpec):
    parts: list["RewardIn"] = Field(default_factory=list)
    weights: list[Positive] = Field(default_factory=list)


class EvalIn(plan.EvalSpec):
    data: DataIn
    k: Count = 1
    max_tokens: Count = _default(plan.EvalSpec, "max_tokens")
    temperature: Annotated[float, Field(ge=0)] = _default(plan.EvalSpec, "temperature")
    top_p: TopP = _default(plan.EvalSpec, "top_p")


class DomainIn(plan.Domain):
    train: DataIn
    reward: RewardIn
    evals: list[EvalIn] = Field(default_factory=list)


class SpecIn(plan.Plan):
    """A whole checked spec; ``lower`` turns it into a `Plan` (order, hashes, branches, paths)."""

    domains: dict[str, DomainIn]
    stages: list[StageIn]
    seed: Annotated[int, Field(ge=0)] = 0


def json_schema() -> dict[str, Any]:
    """JSON schema of the input model of a whole spec (pydantic's ``model_json_schema``)."""
    return SpecIn.model_json_schema()


# ---------------------------------------------------------------- key tables

BOOLS = {"on": True, "off": False, "true": True, "false": False}
STAGE_KINDS = ("sft", "grpo", "distill")
DATA_KINDS = ("jsonl", "gym", "hf_disk", "inline")
REWARD_KINDS = ("math_verify", "gym", "choice", "instructions", "unit_tests", "json_schema", "reward_model",
                "judge", "py", "exact", "weighted", "combined_if_rm")
OVERLONG = ("none", "penalty", "filter")
# models shipped inside PyPI packages (`runtime.models.PACKAGED`; a test keeps the two equal) and their
# parameter counts, summed over the tensors of the shipped GGUF file (for the memory estimate, CAS409)
PACKAGED_MODELS = {"smollm2-135m-instruct": 134_515_008}


@dataclass(frozen=True)
class Key:
    """A key users write: where its value goes (a path inside the stage or params dict) and its type."""

    target: tuple[str, ...]
    kind: str  # int | float | bool | str | pair | memory | schedule | enum
    choices: tuple[str, ...] = ()


_SAMPLING = {
    "prompts_per_step": Key(("params", "prompts_per_step"), "int"),
    "rollouts_per_prompt": Key(("params", "rollouts_per_prompt"), "int"),
    "temperature": Key(("params", "temperature"), "float"),
    "top_p": Key(("params", "top_p"), "float"),
    "top_k": Key(("params", "top_k"), "int"),
    "max_prompt": Key(("params", "max_prompt"), "int"),
    "max_response": Key(("params", "max_response"), "int"),
    "overlong": Key(("params", "overlong"), "enum", OVERLONG),
}

STAGE_KEYS: dict[str, dict[str, Key]] = {
    "common": {
        "steps": Key(("params", "steps"), "int"),
        "lr": Key(("params", "optim", "lr"), "schedule"),
        "warmup": Key(("params", "optim", "lr", "warmup"), "int"),
        "warmup_from": Key(("params", "optim", "lr", "warmup_start"), "float"),
        "betas": Key(("params", "optim", "betas"), "pair"),
        "weight_decay": Key(("params", "optim", "weight_decay"), "float"),
        "grad_clip": Key(("params", "optim", "grad_clip"), "float"),
        "eps": Key(("params", "optim", "eps"), "float"),
        "micro_batch": Key(("params", "micro_batch"), "int"),
        "mode": Key(("mode",), "enum", ("thinking", "no_thinking", "none")),
        "eval_every": Key(("eval_every",), "int"),
        "save_every": Key(("save_every",), "int"),
        "seed": Key(("seed",), "int"),
    },
    "sft": {
        "batch_size": Key(("params", "batch_size"), "int"),
        "max_seq": Key(("params", "max_seq"), "int"),
        "packing": Key(("params", "packing"), "bool"),
        "epochs": Key(("params", "epochs"), "float"),
    },
    "grpo": {
        **_SAMPLING,
        "loss": Key(("params", "loss"), "enum", ("token_mean", "seq_mean")),
        "kl": Key(("params", "kl"), "float"),
        "entropy": Key(("params", "entropy"), "float"),
        "dynamic_filter": Key(("params", "dynamic_filter"), "bool"),
    },
    "distill": {
        **_SAMPLING,
        "loss": Key(("params", "loss"), "enum", ("mopd", "forward_kl", "reverse_kl", "jsd")),
        "jsd_beta": Key(("params", "jsd_beta"), "float"),
        "kl_top_k": Key(("params", "kl_top_k"), "int"),
        "is_band": Key(("params", "is_band"), "pair"),
    },
}

RESOURCE_KEYS: dict[str, Key] = {
    "nodes": Key(("resources", "nnodes"), "int"),
    "gpus": Key(("resources", "nproc_per_node"), "int"),
    "device": Key(("resources", "device"), "enum", ("auto", "cpu", "cuda")),
    "precision": Key(("resources", "precision"), "enum", ("auto", "fp32", "bf16")),
    "strategy": Key(("resources", "strategy"), "enum", ("ddp", "zero1", "zero2", "zero3", "fsdp2")),
    "gradient_checkpointing": Key(("resources", "gradient_checkpointing"), "bool"),
    "engine": Key(("resources", "engine"), "enum", ("hf", "vllm")),
    "memory_per_gpu": Key(("resources", "memory_per_gpu_bytes"), "memory"),
    "micro_batch": Key(("params", "micro_batch"), "int"),
}

CASCADE_KEYS = ("seed", "base", "chat")
DOMAIN_KEYS = ("train", "reward", "overlong", "system")
EVAL_KEYS: dict[str, Key] = {
    "metric": Key(("metric",), "metric"),
    "max_tokens": Key(("max_tokens",), "int"),
    "temperature": Key(("temperature",), "float"),
    "top_p": Key(("top_p",), "float"),
}


def is_dir_name(name: str) -> bool:
    """``name`` can be one directory name (the cascade's `build/<name>/` and `runs/<name>/`)."""
    return name not in ("", ".", "..") and not any(c in "/\\" or ord(c) < 32 or c == "\x7f" for c in name)


def stage_keys(kind: str) -> dict[str, Key]:
    """Keys valid in a stage (or `defaults`) of ``kind``."""
    return {**STAGE_KEYS["common"], **STAGE_KEYS.get(kind, {})}


# ---------------------------------------------------------------- value conversion


class Invalid(Exception):
    """A value that cannot be converted; carries its diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _bad(code: str, message: str, span: Span, help: str | None = None, label: str = "") -> Invalid:
    return Invalid(make(code, message, span, label=label, help=help))


def _shape(v: ast.Value) -> str:
    return {ast.Num: "a number", ast.Str: "a string", ast.Metric: "a metric", ast.Ident: "a name",
            ast.ListV: "a list", ast.TupleV: "a tuple", ast.Call: "a call", ast.Record: "a record",
            ast.Schedule: "a schedule"}.get(type(v), "a value")


def _quantity(v: ast.Num) -> tuple[str | None, float]:
    try:
        dim, value = scale(v.value, v.unit)
    except KeyError:
        raise _bad("CAS104", f"unknown unit `{v.unit}` in `{v.text}`", v.span,
                   help="units: " + unit_help()) from None
    if not math.isfinite(value) or abs(value) >= 2**63:
        raise _bad("CAS201", f"`{v.text}` is too large", v.span, help="numbers must be below 2^63")
    return dim, value


def to_int(v: ast.Value, key: str) -> int:
    if not isinstance(v, ast.Num):
        raise _bad("CAS200", f"`{key}` takes an integer, found {_shape(v)}", v.span, help=f"write e.g. `{key} = 8`")
    dim, value = _quantity(v)
    if dim not in (None, "count"):
        raise _bad("CAS202", f"`{key}` takes a count, found a {dim} quantity `{v.text}`", v.span,
                   help="use a count unit (`k`, `Ki`, `M`) or a plain number")
    if not float(value).is_integer():
        raise _bad("CAS200", f"`{key}` takes an integer, found `{v.text}`", v.span,
                   help=f"round it, e.g. `{key} = {int(round(value))}`")
    return int(value)


def to_float(v: ast.Value, key: str) -> float:
    if not isinstance(v, ast.Num):
        raise _bad("CAS200", f"`{key}` takes a number, found {_shape(v)}", v.span, help=f"write e.g. `{key} = 0.5`")
    _, value = _quantity(v)
    if v.unit is not None:
        raise _bad("CAS202", f"`{key}` takes a plain number, found the quantity `{v.text}`", v.span,
                   help="drop the unit")
    return value


def to_bool(v: ast.Value, key: str) -> bool:
    if isinstance(v, ast.Ident) and v.name in BOOLS:
        return BOOLS[v.name]
    raise _bad("CAS200", f"`{key}` takes `on` or `off`, found {_shape(v)}", v.span, help=f"write `{key} = on`")


def to_enum(v: ast.Value, key: str, choices: tuple[str, ...]) -> str:
    name = v.name if isinstance(v, ast.Ident) else v.value if isinstance(v, ast.Str) else None
    if name in choices:
        return name
    shown = f"`{name}`" if name is not None else _shape(v)
    raise _bad("CAS200", f"`{key}` cannot be {shown}", v.span,
               help=did_you_mean(name or "", choices, "values") if name else
               "valid values: " + ", ".join(f"`{c}`" for c in choices))


def to_str(v: ast.Value, key: str) -> str:
    if isinstance(v, ast.Str):
        return v.value
    raise _bad("CAS200", f"`{key}` takes a string, found {_shape(v)}", v.span, help=f'write `{key} = "..."`')


def to_pair(v: ast.Value, key: str) -> tuple[float, float]:
    if isinstance(v, ast.TupleV) and len(v.items) == 2:
        return (to_float(v.items[0], key), to_float(v.items[1], key))
    raise _bad("CAS200", f"`{key}` takes a pair of numbers, found {_shape(v)}", v.span,
               help=f"write e.g. `{key} = (0.9, 0.95)`")


def to_memory(v: ast.Value, key: str) -> int:
    if not isinstance(v, ast.Num):
        raise _bad("CAS200", f"`{key}` takes a memory size, found {_shape(v)}", v.span, help=f"write e.g. `{key} = 80GB`")
    dim, value = _quantity(v)
    if dim not in (None, "memory"):
        raise _bad("CAS202", f"`{key}` takes a memory size, found a {dim} quantity `{v.text}`", v.span,
                   help="use `B`, `KB`, `MB`, `GB`, `KiB`, `MiB`, `GiB` or `TiB`")
    return int(value)


def to_schedule(v: ast.Value, key: str) -> dict[str, Any]:
    """``lr`` values → the fields of `plan.Schedule` that the expression sets."""
    if isinstance(v, ast.Num):
        return {"peak": to_float(v, key), "end": None, "kind": "constant"}
    if not isinstance(v, ast.Schedule):
        raise _bad("CAS200", f"`{key}` takes a learning rate or schedule, found {_shape(v)}", v.span,
                   help="write e.g. `lr = 3e-6` or `lr = 5e-5 -> 5e-6 cosine warmup 200`")
    out: dict[str, Any] = {"peak": to_float(v.peak, key), "end": None, "kind": "constant"}
    if v.end is not None and v.kind is not None:
        out["end"] = to_float(v.end, key)
        out["kind"] = to_enum(v.kind, "schedule kind", ("cosine", "linear", "constant"))
    if v.warmup is not None:
        out["warmup"] = to_int(v.warmup, "warmup")
        out["warmup_start"] = to_float(v.warmup_from, "from") if v.warmup_from is not None else 0.0
    return out


def to_plain(v: ast.Value, key: str) -> Any:
    """A free-form argument (reward args, gym args, tiny-model config, inline rows) as JSON data.

    Quantities become base units (seconds, bytes, counts); ``field("col")`` becomes ``{"field": "col"}``.
    """
    if isinstance(v, ast.Num):
        value = _quantity(v)[1]
        return as_number(value) if v.unit else (int(value) if v.is_int else value)
    if isinstance(v, ast.Str):
        return v.value
    if isinstance(v, ast.Ident):
        return BOOLS.get(v.name, v.name)
    if isinstance(v, ast.Metric):
        return f"{v.kind}@{v.k}"
    if isinstance(v, ast.ListV):
        if v.items and all(isinstance(i, ast.Pair) for i in v.items):
            return {i.key.name: to_plain(i.value, key) for i in v.items}  # type: ignore[union-attr]
        if any(isinstance(i, ast.Pair) for i in v.items):
            raise _bad("CAS200", f"`{key}` mixes `name: value` pairs with plain items", v.span,
                       help="write every item as `name: value`, or none")
        return [to_plain(i, key) for i in v.items]  # type: ignore[arg-type]
    if isinstance(v, ast.TupleV):
        return [to_plain(i, key) for i in v.items]
    if isinstance(v, ast.Record):
        return {e.key.name: to_plain(e.value, e.key.name) for e in v.entries}
    if isinstance(v, ast.Call) and v.func.name == "field" and len(v.args) == 1 and not v.kwargs \
            and isinstance(v.args[0], ast.Str):
        return {"field": v.args[0].value}
    raise _bad("CAS200", f"`{key}` cannot be {_shape(v)} here", v.span,
               help='arguments take numbers, strings, names, lists, records or `field("column")`')


def convert(v: ast.Value, key: str, spec: Key) -> Any:
    if spec.kind == "int":
        return to_int(v, key)
    if spec.kind == "float":
        return to_float(v, key)
    if spec.kind == "bool":
        return to_bool(v, key)
    if spec.kind == "enum":
        return to_enum(v, key, spec.choices)
    if spec.kind == "pair":
        return to_pair(v, key)
    if spec.kind == "memory":
        return to_memory(v, key)
    if spec.kind == "schedule":
        return to_schedule(v, key)
    if spec.kind == "metric":
        return to_metric(v, key)
    raise AssertionError(spec.kind)


def to_metric(v: ast.Value, key: str) -> dict[str, Any]:
    if isinstance(v, ast.Metric) and v.kind in ("pass", "avg"):
        if v.kind == "pass" and v.k == 1:
            return {"metric": "pass@1", "k": 1}
        return {"metric": f"{v.kind}@k", "k": v.k}
    raise _bad("CAS200", f"`{key}` takes `pass@1`, `avg@K` or `pass@K`", v.span, help="write e.g. `metric = avg@4`")


# ---------------------------------------------------------------- calls: data, rewards, models


def _resolve(path: str, span: Span) -> str:
    """A path written in the file at ``span.path``, made absolute relative to that file's directory."""
    base = os.path.dirname(os.path.abspath(span.path)) if not span.path.startswith("<") else os.getcwd()
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _call(v: ast.Value, what: str, kinds: tuple[str, ...], example: str) -> ast.Call:
    if not isinstance(v, ast.Call):
        raise _bad("CAS200", f"{what} must be a call such as `{example}`, found {_shape(v)}", v.span,
                   help=f"write e.g. `{example}`")
    if v.func.name not in kinds:
        raise _bad("CAS312", f"unknown {what} `{v.func.name}`", v.func.span, label=f"not a {what}",
                   help=did_you_mean(v.func.name, kinds, f"{what}s"))
    if v.by is not None:
        raise _bad("CAS200", "`by` is only valid inside `best(...)`", v.by.span, help="remove `by ...`")
    _positional_order(v)
    return v


def _positional_order(call: ast.Call) -> None:
    """Positional arguments come before keyword ones; `size = 1,000` is the usual way to break that."""
    if not call.kwargs:
        return
    first_kw = call.kwargs[0]
    late = [a for a in call.args if a.span.start > first_kw.span.start]
    if not late:
        return
    arg = late[0]
    before = max((kw for kw in call.kwargs if kw.span.start < arg.span.start), key=lambda kw: kw.span.start)
    if isinstance(arg, ast.Num) and isinstance(before.value, ast.Num) and arg.span.start == before.value.span.end + 1:
        raise _bad("CAS200", "`,` is not a thousands separator", arg.span, label="read as another argument",
                   help=f"write `{before.value.text}{arg.text}` or `{before.value.text}_{arg.text}`")
    raise _bad("CAS200", f"a positional argument after `{before.key.name} = ...` in `{call.func.name}(...)`", arg.span,
               label="positional argument", help="put positional arguments first, or name this one")


def _one_string(call: ast.Call, what: str) -> str:
    if len(call.args) != 1 or not isinstance(call.args[0], ast.Str):
        raise _bad("CAS200", f"`{call.func.name}(...)` takes one string ({what}) as its first argument",
                   call.span, help=f'write `{call.func.name}("...")`')
    return call.args[0].value


def to_data(v: ast.Value, key: str) -> dict[str, Any]:
    call = _call(v, "data source", DATA_KINDS, 'jsonl("data/train.jsonl")')
    kind = call.func.name
    out: dict[str, Any] = {"kind": kind}
    if kind == "inline":
        if len(call.args) != 1 or call.kwargs or not isinstance(call.args[0], ast.ListV) \
                or not all(isinstance(r, ast.Record) for r in call.args[0].items):
            raise _bad("CAS200", "`inline(...)` takes one list of records", call.span,
                       help='write `inline([{prompt = "1+1", answer = "2"}])`')
        if not call.args[0].items:
            raise _bad("CAS201", "`inline([])` holds no rows", call.args[0].span, label="empty list",
                       help='add at least one row, e.g. `inline([{prompt = "1+1", answer = "2"}])`')
        out["rows"] = [to_plain(r, "rows") for r in call.args[0].items]  # type: ignore[arg-type]
        return out
    first = _one_string(call, "a name" if kind == "gym" else "a path")
    if kind == "gym":
        out["name"] = first
    else:
        out["path"] = _resolve(first, call.args[0].span)
    for kw in call.kwargs:
        name = kw.key.name
        if name == "seed":
            out["seed"] = to_int(kw.value, name)
        elif kind == "gym" and name == "size":
            out["size"] = to_int(kw.value, name)
        elif kind == "hf_disk" and name == "split":
            out["split"] = to_str(kw.value, name)
        elif kind == "gym":
            out.setdefault("args", {})[name] = to_plain(kw.value, name)
        else:
            out.setdefault("fields", {})[name] = to_str(kw.value, name)
    return out


_REWARD_POSITIONAL = {"reward_model": "model", "judge": "model", "py": "fn"}


def to_reward(v: ast.Value, key: str) -> dict[str, Any]:
    call = _call(v, "reward", REWARD_KINDS, "math_verify()")
    kind = call.func.name
    out: dict[str, Any] = {"kind": kind, "args": {}}
    if kind in ("weighted", "combined_if_rm"):
        out["parts"] = [to_reward(a, key) for a in call.args]
        want = 2 if kind == "combined_if_rm" else None
        if (want and len(call.args) != want) or len(call.args) < 1:
            raise _bad("CAS200", f"`{kind}(...)` takes {want or 'one or more'} rewards", call.span,
                       help="write `combined_if_rm(instructions(), reward_model(\"rm\"))`" if want else
                       "write `weighted(math_verify(), exact(), weights = [0.7, 0.3])`")
    elif kind in _REWARD_POSITIONAL and call.args:
        out["args"][_REWARD_POSITIONAL[kind]] = _one_string(call, _REWARD_POSITIONAL[kind])
    elif call.args:
        raise _bad("CAS200", f"`{kind}(...)` takes keyword arguments only", call.args[0].span,
                   help=f"name the argument, e.g. `{kind}(answer = field(\"answer\"))`")
    named: dict[str, ast.Value] = {kw.key.name: kw.value for kw in call.kwargs
                                   if kw.key.name not in ("code_switch_penalty", "weights")}
    if kind in _REWARD_POSITIONAL and call.args:
        named[_REWARD_POSITIONAL[kind]] = call.args[0]
    problem = check_reward_args(call, named)
    if problem is not None:
        raise Invalid(problem)
    for kw in call.kwargs:
        name = kw.key.name
        if name == "code_switch_penalty":
            out["code_switch_penalty"] = to_float(kw.value, name)
        elif name == "weights" and kind == "weighted":
            if not isinstance(kw.value, ast.ListV):
                raise _bad("CAS200", "`weights` takes a list of numbers", kw.value.span, help="write `weights = [0.7, 0.3]`")
            out["weights"] = [to_float(w, name) for w in kw.value.items]  # type: ignore[arg-type]
        else:
            out["args"][name] = to_plain(kw.value, name)
    if kind == "weighted" and len(out.get("weights", [])) != len(out["parts"]):
        raise _bad("CAS200", f"`weighted(...)` has {len(out['parts'])} rewards but "
                   f"{len(out.get('weights', []))} weights", call.span, help="give one weight per reward")
    return out


def to_model(v: ast.Value, key: str) -> dict[str, Any]:
    call = _call(v, "model source", ("model",), 'model("org/name")')
    out: dict[str, Any] = {}
    for kw in call.kwargs:
        if kw.key.name != "tokenizer":
            raise _bad("CAS301", f"unknown argument `{kw.key.name}` of `model(...)`", kw.key.span,
                       help="`model(...)` takes only `tokenizer = \"...\"`")
        out["tokenizer"] = to_str(kw.value, "tokenizer")
    if len(call.args) != 1:
        raise _bad("CAS200", "`model(...)` takes one source", call.span,
                   help='write `model("org/name")`, `model("./dir")`, `model(packaged("...\"))` or `model(tiny(llama))`')
    src = call.args[0]
    if isinstance(src, ast.Str) and not src.value.strip():
        raise _bad("CAS200", "`model(...)` names no model", src.span, label="empty string",
                   help='write `model("org/name")`, `model("./dir")` or `model(packaged("smollm2-135m-instruct"))`')
    if isinstance(src, ast.Str):
        local = src.value.startswith(("./", "../", "/", "~"))
        out.update(kind="path" if local else "hub", name=_resolve(src.value, src.span) if local else src.value)
        return out
    inner = _call(src, "model source", ("packaged", "tiny"), 'packaged("smollm2-135m-instruct")')
    if inner.func.name == "packaged":
        name = _one_string(inner, "a package key")
        if name not in PACKAGED_MODELS:
            raise _bad("CAS312", f"unknown packaged model `{name}`", inner.args[0].span, label="not packaged",
                       help=did_you_mean(name, PACKAGED_MODELS, "packaged models"))
        out.update(kind="packaged", name=name)
        return out
    if len(inner.args) != 1 or not isinstance(inner.args[0], (ast.Ident, ast.Str)):
        raise _bad("CAS200", "`tiny(...)` takes an architecture family first", inner.span,
                   help="write `tiny(llama, hidden_size = 64)`")
    family = inner.args[0]
    out.update(kind="tiny", name=family.name if isinstance(family, ast.Ident) else family.value,
               config={kw.key.name: to_plain(kw.value, kw.key.name) for kw in inner.kwargs})
    return out


def to_chat(v: ast.Value, key: str) -> dict[str, Any]:
    call = _call(v, "chat template", ("template",), 'template(thinking = "<think>\\n")')
    if call.args:
        raise _bad("CAS200", "`template(...)` takes keyword arguments only", call.args[0].span,
                   help='write `template(thinking = "<think>\\n", no_thinking = "<think></think>")`')
    out: dict[str, Any] = {}
    for kw in call.kwargs:
        if kw.key.name not in ("thinking", "no_thinking", "system"):
            raise _bad("CAS301", f"unknown argument `{kw.key.name}` of `template(...)`", kw.key.span,
                       help=did_you_mean(kw.key.name, ("thinking", "no_thinking", "system"), "arguments"))
        out[kw.key.name] = to_str(kw.value, kw.key.name)
    return out


# ---------------------------------------------------------------- building the spec


@dataclass
class Built:
    """The raw input dict with a side table: location of a value → (span of its text, user's key)."""

    data: dict[str, Any] = field(default_factory=dict)
    spans: dict[tuple[Any, ...], tuple[Span, str]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def put(self, loc: tuple[Any, ...], value: Any, span: Span, key: str) -> None:
        node = self.data
        for part in loc[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
        node[loc[-1]] = value
        self.spans[loc] = (span, key)

    def guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Invalid as exc:
            self.diagnostics.append(exc.diagnostic)


def _stage_assign(b: Built, i: int, a: ast.Assign, keys: dict[str, Key]) -> None:
    spec = keys.get(a.key.name)
    if spec is None:  # reported by the key check
        return
    value = convert(a.value, a.key.name, spec)
    loc = ("stages", i, *spec.target)
    if spec.kind == "schedule":
        for k, val in value.items():
            b.put(loc + (k,), val, a.value.span, a.key.name)
    else:
        b.put(loc, value, a.value.span, a.key.name)


def _stage(b: Built, i: int, st: ast.Stage, view: ast.SpecView, seed: int, seed_span: Span) -> None:
    kind = st.kind.name
    b.put(("stages", i, "name"), st.name.name, st.name.span, "stage")
    b.put(("stages", i, "kind"), kind, st.kind.span, "kind")
    b.put(("stages", i, "parent"), st.parent.name, st.parent.span, "parent")
    b.put(("stages", i, "params", "kind"), kind, st.kind.span, "kind")
    b.put(("stages", i, "seed"), seed, seed_span, "seed")  # the cascade's seed unless the stage sets one
    b.spans[("stages", i)] = (st.name.span, st.name.name)
    b.spans[("stages", i, "params")] = (st.name.span, st.name.name)
    b.spans[("stages", i, "params", "optim")] = (st.name.span, "lr")
    domain_names = [d.name.name for d in view.domains]
    if st.on is None:
        for d in domain_names:
            b.put(("stages", i, "domains", d), 1.0, st.name.span, "on")
    elif isinstance(st.on, ast.Ident):
        b.put(("stages", i, "domains", st.on.name), 1.0, st.on.span, "on")
    else:
        for item in st.on.items:
            if isinstance(item, ast.Pair):
                b.guard(lambda item=item: b.put(("stages", i, "domains", item.key.name),
                                                to_float(item.value, "weight"), item.value.span, "weight"))
            elif isinstance(item, ast.Ident):
                b.put(("stages", i, "domains", item.name), 1.0, item.span, "on")
    keys = stage_keys(kind)
    for res in view.resources:
        for a in res.assigns:
            b.guard(lambda a=a: _stage_assign(b, i, a, RESOURCE_KEYS))
    for d in view.defaults:
        if d.kind.name == kind:
            for a in d.items:
                if isinstance(a, ast.Assign):
                    b.guard(lambda a=a: _stage_assign(b, i, a, keys))
    for item in st.items:
        if isinstance(item, ast.Assign):
            b.guard(lambda a=item: _stage_assign(b, i, a, keys))
        elif isinstance(item, ast.Resources):
            for a in item.assigns:
                b.guard(lambda a=a: _stage_assign(b, i, a, RESOURCE_KEYS))
        elif isinstance(item, ast.Teachers):
            for a in item.assigns:
                b.guard(lambda a=a: b.put(("stages", i, "teachers", a.key.name), _teacher(a.value),
                                          a.value.span, a.key.name))
        elif isinstance(item, ast.Until):
            b.data.setdefault("stages", {}).setdefault(i, {}).setdefault("until", [])
            for cond in item.conds:
                b.guard(lambda c=cond: _condition(b, i, c))


def _teacher(v: ast.Value) -> dict[str, Any]:
    if isinstance(v, ast.Ident):
        return {"kind": "stage", "stage": v.name}
    if isinstance(v, ast.Call) and v.func.name == "best" and v.by is not None and not v.kwargs \
            and all(isinstance(a, ast.Ident) for a in v.args):
        return {"kind": "best", "candidates": [a.name for a in v.args],  # type: ignore[union-attr]
                "domain": v.by.first.name, "eval": v.by.second.name}
    raise _bad("CAS200", f"a teacher is a stage name or `best(...)`, found {_shape(v)}", v.span,
               help="write `math = sft` or `math = best(sft, rl by math.gsm)`")


def _condition(b: Built, i: int, c: ast.Cond) -> None:
    until = b.data["stages"][i]["until"]
    loc = ("stages", i, "until", len(until))
    if isinstance(c, ast.StepsCond):
        out = {"kind": "steps", "op": c.op, "value": float(to_int(c.value, "steps"))}
        b.spans[loc + ("value",)] = (c.value.span, "steps")
    elif isinstance(c, ast.Threshold):
        out = {"kind": "threshold", "domain": c.ref.first.name, "eval": c.ref.second.name, "op": c.op,
               "value": to_float(c.value, "threshold") if c.value is not None else 1.0}
        if c.teacher is not None:
            out["relative_to"] = c.teacher.domain.name
        if c.value is not None:
            b.spans[loc + ("value",)] = (c.value.span, "threshold")
    else:
        out = {"kind": "plateau", "domain": c.ref.first.name, "eval": c.ref.second.name}
        for kw in c.kwargs:
            if kw.key.name == "patience":
                out["patience"] = to_int(kw.value, "patience")
            elif kw.key.name == "min_delta":
                out["min_delta"] = to_float(kw.value, "min_delta")
            else:
                raise _bad("CAS301", f"unknown argument `{kw.key.name}` of `plateau(...)`", kw.key.span,
                           help=did_you_mean(kw.key.name, ("patience", "min_delta"), "arguments"))
            b.spans[loc + (kw.key.name,)] = (kw.value.span, kw.key.name)
        # the runtime stops after `patience` eval points without a gain (Keras EarlyStopping); 0 means nothing
        if "patience" not in out:
            raise _bad("CAS203", "`plateau(...)` needs `patience`", c.span, label="how many eval points to wait",
                       help=f"write e.g. `plateau({c.ref.first.name}.{c.ref.second.name}, patience = 3)`")
        if out["patience"] < 1:
            raise _bad("CAS201", f"`plateau(...)` needs `patience` of at least 1, found {out['patience']}",
                       b.spans[loc + ("patience",)][0], label="eval points to wait for a gain",
                       help="write e.g. `patience = 3`")
    b.spans[loc] = (c.span, "until")
    until.append(out)


def _domain(b: Built, d: ast.Domain) -> None:
    name = d.name.name
    loc = ("domains", name)
    b.put(loc + ("name",), name, d.name.span, "domain")
    b.spans[loc] = (d.name.span, name)
    converters = {"train": to_data, "reward": to_reward, "system": to_str,
                  "overlong": lambda v, k: to_enum(v, k, OVERLONG)}
    for a in d.assigns:
        fn = converters.get(a.key.name)
        if fn is not None:
            b.guard(lambda a=a, fn=fn: b.put(loc + (a.key.name,), fn(a.value, a.key.name), a.value.span,
                                              a.key.name))
            _note_call_arguments(b, loc + (a.key.name,), a.value)
    evals: list[dict[str, Any]] = []
    b.put(loc + ("evals",), evals, d.name.span, "eval")
    for j, ev in enumerate(d.evals):
        entry: dict[str, Any] = {"name": ev.name.name}
        evals.append(entry)
        b.spans[loc + ("evals", j)] = (ev.name.span, ev.name.name)

        def fill(ev: ast.EvalDecl = ev, entry: dict[str, Any] = entry, j: int = j) -> None:
            entry["data"] = to_data(ev.data, "eval")
            b.spans[loc + ("evals", j, "data")] = (ev.data.span, "eval")
            _note_call_arguments(b, loc + ("evals", j, "data"), ev.data)
            for a in ev.body:
                spec = EVAL_KEYS.get(a.key.name)
                if spec is not None:
                    value = convert(a.value, a.key.name, spec)
                    # `metric = avg@4` sets two fields (metric and k); every other key sets one
                    fields = value if isinstance(value, dict) else {spec.target[0]: value}
                    entry.update(fields)
                    for k in fields:
                        b.spans[loc + ("evals", j, k)] = (a.value.span, a.key.name)
        b.guard(fill)


def _note_call_arguments(b: Built, loc: tuple[Any, ...], v: ast.Value) -> None:
    """Record the span of each keyword argument of a call (`gym(..., size = -5)`), so that a range error
    on one argument points at its value rather than at the whole call."""
    if isinstance(v, ast.Call):
        for kw in v.kwargs:
            b.spans[loc + (kw.key.name,)] = (kw.value.span, kw.key.name)


def _listify(data: dict[str, Any]) -> None:
    """Stages are collected under integer keys while being built; pydantic wants a list."""
    stages = data.get("stages", {})
    data["stages"] = [stages[i] for i in sorted(stages)]


# plan field → the key a user writes, for messages about fields the user did not set
_FIELD_WORDS = {"optim": "lr", "nnodes": "nodes", "nproc_per_node": "gpus", "memory_per_gpu_bytes": "memory_per_gpu",
                "warmup_start": "warmup_from"}


def _locate(b: Built, loc: tuple[Any, ...], fallback: Span) -> tuple[Span, str]:
    # the discriminated union adds the tag (`grpo`) after `params`; our table has no such level
    if len(loc) > 3 and loc[0] == "stages" and loc[2] == "params" and loc[3] in STAGE_KINDS:
        loc = loc[:3] + loc[4:]
    for n in range(len(loc), 0, -1):
        if loc[:n] in b.spans:
            span, key = b.spans[loc[:n]]
            rest = [part for part in loc[n:] if isinstance(part, str)]
            # a tuple element (`betas`, index 1) keeps the key; a missing field names the field
            return span, rest[-1] if rest else key
    return fallback, str(loc[-1]) if loc else "spec"


def _validation_diagnostics(b: Built, exc: ValidationError, fallback: Span) -> list[Diagnostic]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        span, key = _locate(b, loc, fallback)
        key = _FIELD_WORDS.get(key, key)
        if err["type"] == "missing":
            where = "stage" if loc[:1] == ("stages",) else "domain" if loc[:1] == ("domains",) else "cascade"
            fix = {"lr": "set `lr = 3e-6` in the stage or in its `defaults` block",
                   "steps": "set `steps = N` in the stage or in its `defaults` block",
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

# a lower bound the model lets through but a later check refuses (CAS401 zero steps, CAS402 groups of one):
# the message names the bound the user must really meet
_LOWEST_ACCEPTED = {"steps": 1, "rollouts_per_prompt": 2}


def _range_diagnostic(key: str, err: Any, span: Span) -> Diagnostic:
    """CAS201 for a value outside its field's bound, worded as `` `steps` must be at least 1, found -3``."""
    words, bound_key = _BOUND_WORDS[err["type"]]
    bound = err["ctx"][bound_key]
    if bound_key == "ge" and key in _LOWEST_ACCEPTED:
        bound = max(bound, _LOWEST_ACCEPTED[key])
    limit, found = _number(bound), _number(err["input"])
    subject = "the K of `metric = pass@K` or `avg@K`" if key == "metric" else f"`{key}`"
    return make("CAS201", f"{subject} must be {words} {limit}, found {found}", span,
                label=f"{words} {limit}", help=_RANGE_HELP.get(key, f"use a `{key}` {words} {limit}"))


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
    "metric": "K counts the samples per prompt: write e.g. `metric = pass@1` or `metric = avg@4`",
    "max_tokens": "`max_tokens` caps the tokens of each sampled answer, e.g. `max_tokens = 512`",
    "rollouts_per_prompt": "a GRPO group needs at least 2 rollouts to have an advantage; the papers use 8 or 16",
    "kl": "`kl` weighs the reverse-KL penalty to the reference; 0 turns it off",
    "entropy": "`entropy` weighs the entropy bonus; 0 turns it off",
    "seed": "seeds are whole numbers from 0 up, e.g. `seed = 1`",
    "jsd_beta": "`jsd_beta` lies in [0, 1]: 0 is forward KL, 1 reverse KL",
}


Spans = dict[tuple[Any, ...], tuple[Span, str]]


def build(view: ast.SpecView) -> tuple[SpecIn | None, list[Diagnostic], Spans]:
    """AST view → validated `SpecIn` (or None) with CAS1xx/CAS2xx diagnostics, and the location → span
    table of every value (used by later checks and for origins)."""
    b = Built()
    cascade = view.cascade
    assert cascade is not None  # CAS311 stops the pipeline before the model is built
    b.put(("name",), cascade.name.value, cascade.name.span, "cascade")
    converters = {"base": to_model, "chat": to_chat, "seed": to_int}
    for a in view.assigns:
        fn = converters.get(a.key.name)
        if fn is not None:
            b.guard(lambda a=a, fn=fn: b.put((a.key.name,), fn(a.value, a.key.name), a.value.span, a.key.name))
    seed = b.data.get("seed", 0)
    seed_span = b.spans[("seed",)][0] if ("seed",) in b.spans else cascade.name.span
    b.data["domains"] = {}
    for d in view.domains:
        _domain(b, d)
    b.data["stages"] = {}
    for i, st in enumerate(view.stages):
        _stage(b, i, st, view, seed, seed_span)
    if b.diagnostics:
        # `resources` and `defaults` values are converted once per stage: report each mistake once
        return None, list(dict.fromkeys(b.diagnostics)), b.spans
    _listify(b.data)
    try:
        return SpecIn.model_validate(b.data), [], b.spans
    except ValidationError as exc:
        return None, _validation_diagnostics(b, exc, cascade.name.span), b.spans
