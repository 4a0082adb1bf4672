"""The input model of a whole spec: the plan models of `cascadec.contract` plus the ranges a user can get wrong
outside stage parameters (stage parameters carry their own ranges: `cascadec.contract.params`), so every
default is the plan's default by construction. `json_schema()` exports the schema of a whole spec.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from cascadec.contract import plan
from cascadec.contract.params import Count, Positive, TopP


def _default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].default


class ResourcesIn(plan.Resources):
    nnodes: Count = _default(plan.Resources, "nnodes")
    nproc_per_node: Count = _default(plan.Resources, "nproc_per_node")
    memory_per_gpu_bytes: Annotated[int, Field(gt=0)] | None = None
    node_gpus: Count | None = None
    tensor_parallel: Count = 1


class ConditionIn(plan.Condition):
    patience: Annotated[int, Field(ge=0)] = 0
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class StageIn(plan.Stage):
    domains: dict[str, Positive]
    until: list[ConditionIn] = Field(default_factory=list)
    eval_every: Annotated[int, Field(ge=0)] = _default(plan.Stage, "eval_every")
    save_every: Annotated[int, Field(ge=0)] | None = None
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
    reward: RewardIn | None = None
    evals: list[EvalIn] = Field(default_factory=list)


class SpecIn(plan.Plan):
    """A whole checked spec; ``lower`` turns it into a `Plan` (order, hashes, branches, paths)."""

    domains: dict[str, DomainIn]
    stages: list[StageIn]
    seed: Annotated[int, Field(ge=0)] = 0


def json_schema() -> dict[str, Any]:
    """JSON schema of the input model of a whole spec (pydantic's ``model_json_schema``)."""
    return SpecIn.model_json_schema()

