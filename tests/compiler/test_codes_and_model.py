"""Diagnostic code registry and the typed input model."""

from __future__ import annotations

import re

import pytest

from compiler_helpers import ROOT

from cascadec.contract import plan
from cascadec.codes import CODES, make
from cascadec.contract.kinds import STAGE_KINDS
from cascadec.model import SpecIn, json_schema, stage_keys


def test_every_code_used_in_the_compiler_is_registered_and_explained() -> None:
    used = set()
    for path in (ROOT / "cascadec").rglob("*.py"):
        used |= set(re.findall(r'"(CAS\d{3})"', path.read_text(encoding="utf-8")))
    assert used - set(CODES) == set()
    for code in CODES.values():
        assert re.fullmatch(r"CAS\d{3}", code.code) and re.fullmatch(r"[a-z]+(-[a-z]+)*", code.name)
        assert code.summary and not code.summary.endswith(".") and len(code.explanation) > 40


def test_make_fills_name_and_severity_from_the_table() -> None:
    d = make("CAS315", "x")
    assert (d.name, d.severity) == ("teacher-domain-unused", "warning")


def test_json_schema_exports_the_whole_spec_model() -> None:
    schema = json_schema()
    assert schema["title"] == "SpecIn" and {"stages", "domains", "base"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_input_models_keep_the_plan_defaults() -> None:
    # the input models subclass the plan models; their defaults must not drift apart (stage parameters are
    # one class for both: `cascadec.contract.params`)
    from cascadec.model import inputs

    pairs = [(inputs.ResourcesIn, plan.Resources), (inputs.EvalIn, plan.EvalSpec), (inputs.StageIn, plan.Stage)]
    for sub, base in pairs:
        for name, field in base.model_fields.items():
            if not field.is_required() and field.default_factory is None:
                assert sub.model_fields[name].default == field.default, (sub.__name__, name)
    assert SpecIn.model_config["extra"] == "forbid"


def test_every_params_field_is_reachable_from_a_key() -> None:
    from cascadec.overlong import FIELDS

    for kind in STAGE_KINDS.values():
        keys = stage_keys(kind.name).values()
        targets = {k.target[-1] for k in keys} | {f for k in keys if k.kind == "overlong" for f in FIELDS}
        missing = set(kind.params.model_fields) - targets - {"kind", "optim", "lr"}
        assert not missing, (kind.name, missing)


def test_language_reference_lists_every_stage_key() -> None:
    doc = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    for kind in STAGE_KINDS:
        for key in stage_keys(kind):
            assert f"`{key}`" in doc, key


def test_packaged_models_match_the_runtime() -> None:
    from cascadec.model import PACKAGED_MODELS

    models = pytest.importorskip("runtime.models")
    assert set(PACKAGED_MODELS) == set(models.PACKAGED)


@pytest.mark.parametrize(("temperature", "warned"), [(0, False), (0.7, True), (1, False), (1.3, True)])
def test_cas412_is_documented_as_the_check_runs_greedy_distillation_is_not_warned(temperature: float,
                                                                                  warned: bool) -> None:
    from cascadec.compiler import compile_source

    text = f'''cascade "t" {{
  base = model(tiny(llama))
  domain d {{ train = inline([{{prompt = "1+1", answer = "2"}}])  reward = exact() }}
  stage s = distill(base) {{ steps = 1  lr = 1e-6  temperature = {temperature}  teachers {{ default = base }} }}
}}'''
    assert ("CAS412" in [d.code for d in compile_source(text, "t.cascade").diagnostics]) is warned
    code = CODES["CAS412"]
    assert "other than 0 and 1" in code.summary and "(`temperature = 0`) is not warned" in code.explanation
    language = " ".join((ROOT / "docs" / "language.md").read_text(encoding="utf-8").split())
    assert "a greedy stage, `temperature = 0`, does not" in language
