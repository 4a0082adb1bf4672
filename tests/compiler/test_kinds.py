"""The kind registry (`cascadec.contract.kinds`) is the one list both sides read: the plan IR, the compiler's
key tables, the runtime's trainers, rewards and engines, and the docs all agree with it."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest

from cascadec.contract import plan
from cascadec.contract.kinds import ENGINE_KEYWORDS, ENGINES, REWARD_KINDS, STAGE_KINDS, load
from cascadec.model.keys import RESOURCE_KEYS, stage_keys

ROOT = Path(__file__).resolve().parents[2]


def test_the_plan_accepts_exactly_the_registered_kinds() -> None:
    assert set(typing.get_args(plan.Stage.model_fields["kind"].annotation)) == set(STAGE_KINDS)
    assert set(typing.get_args(plan.Resources.model_fields["engine"].annotation)) == set(ENGINE_KEYWORDS)
    # the one engine `engine = NAME` cannot name is the one `rollout = vllm(gpus = N)` / `endpoint(...)` picks
    served = plan.Resources(rollout=plan.Server(kind="endpoint", url="http://h:1", model="p"))
    assert set(ENGINES) - set(ENGINE_KEYWORDS) == {served.rollout_engine()}
    union = typing.get_args(typing.get_args(plan.StageParams)[0])
    assert {p.model_fields["kind"].default for p in union} == set(STAGE_KINDS)
    for name, kind in STAGE_KINDS.items():
        assert kind.name == name and kind.params.model_fields["kind"].default == name


def test_the_compiler_reads_the_registry() -> None:
    assert RESOURCE_KEYS["engine"].choices == ENGINE_KEYWORDS
    for name, kind in STAGE_KINDS.items():
        assert stage_keys(name) == kind.all_keys()
        assert kind.params.batch_key in kind.all_keys()


def test_the_runtime_implements_every_registered_kind() -> None:
    stages = pytest.importorskip("runtime.stages")
    assert set(stages.TRAINERS) == set(STAGE_KINDS)
    for name, kind in STAGE_KINDS.items():
        trainer = load(kind.trainer)
        assert stages.TRAINERS[name] is trainer
        assert all(callable(getattr(trainer, m, None)) for m in ("step", "state_dict", "load_state_dict")), name
    for kind in REWARD_KINDS.values():
        assert inspect.isclass(load(kind.impl)), kind.name
    for engine in ENGINES.values():
        factory = load(engine.impl)
        assert list(inspect.signature(factory).parameters) == ["ctx"], engine.name


def test_the_docs_list_every_kind() -> None:
    language = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    rewards = (ROOT / "docs" / "rewards.md").read_text(encoding="utf-8")
    assert all(f"`{k}`" in language for k in [*STAGE_KINDS, *ENGINES])
    assert all(f"`{k}" in rewards for k in REWARD_KINDS)
    assert all(k.doc for k in [*STAGE_KINDS.values(), *REWARD_KINDS.values(), *ENGINES.values()])


def test_an_unregistered_kind_in_a_hand_built_plan_is_rejected_with_the_registered_names() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        plan.Stage.model_validate({"name": "s", "kind": "dpo", "parent": "base", "domains": {},
                                   "params": {"kind": "sft", "optim": {"lr": {"peak": 1.0}}, "steps": 1}})
    assert all(f"'{k}'" in str(caught.value) for k in STAGE_KINDS)
