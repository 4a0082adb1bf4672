"""The JSON schemas published in docs/schema/ are current, and real plans and specs validate against them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from cascadec.compiler import compile_file
from cascadec.model import SpecIn
from cascadec.schemas import render, schemas

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "schema"
SPECS = sorted([*ROOT.glob("specs/*.cascade"), *ROOT.glob("examples/*.cascade")])
GOLDEN_PLANS = sorted((ROOT / "tests" / "golden" / "valid").glob("*.plan.json"))


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((DOCS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", sorted(schemas()))
def test_published_schema_is_current(name: str) -> None:
    assert (DOCS / name).read_text() == render(schemas()[name]), "run: python -m cascadec.schemas docs/schema"


@pytest.mark.parametrize("plan", GOLDEN_PLANS, ids=[p.name for p in GOLDEN_PLANS])
def test_golden_plans_validate(plan: Path) -> None:
    _validator("plan.schema.json").validate(json.loads(plan.read_text()))


@pytest.mark.parametrize("spec", SPECS, ids=[p.name for p in SPECS])
def test_compiled_specs_validate(spec: Path) -> None:
    result = compile_file(spec)
    assert result.plan is not None
    _validator("plan.schema.json").validate(json.loads(result.plan.to_json()))
    # the input model is the plan before lowering: a plan's own fields minus what lowering adds
    spec_in = json.loads(result.plan.to_json())
    for stage in spec_in["stages"]:
        for key in ("hash", "eval_hash", "branch", "origin"):
            stage.pop(key)
    SpecIn.model_validate(spec_in)
    _validator("spec-input.schema.json").validate(spec_in)


def test_schema_rejects_what_the_runtime_would() -> None:
    plan = json.loads(compile_file(ROOT / "specs" / "nemotron-cascade-2.cascade").plan.to_json())
    validator = _validator("plan.schema.json")
    for broken in ({**plan, "tracking": ["tensorbaord"]}, {**plan, "surprise": 1},
                   {**plan, "stages": [{**plan["stages"][0], "kind": "ppo"}]}):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)
    spec_validator = _validator("spec-input.schema.json")
    stage = {**plan["stages"][1], "params": {**plan["stages"][1]["params"], "top_p": 1.5}}
    with pytest.raises(jsonschema.ValidationError):
        spec_validator.validate({**plan, "stages": [stage]})
