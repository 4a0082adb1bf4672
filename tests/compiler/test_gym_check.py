"""reasoning-gym names and config keys at compile time (CAS318, CAS319) and the registry file they read."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from compiler_helpers import ROOT

from cascadec.checks.gym import CONSUMED_KEYS, load_registry
from cascadec.compiler import compile_file, compile_source
from cascadec.diagnostics import Diagnostic, Span

SCRIPT = ROOT / "scripts" / "gen_gym_registry.py"


def _spec(train: str, *, reward: str = "gym()", eval_data: str = 'gym("basic_arithmetic", size = 8, seed = 2)') -> str:
    return f'''cascade "g" {{
  base = model(tiny(llama, hidden_size = 32))
  domain arith {{
    train  = {train}
    reward = {reward}
    eval held = {eval_data} {{ metric = pass@1  max_tokens = 8 }}
  }}
  stage rl = grpo(base) on arith {{ steps = 2  prompts_per_step = 2  rollouts_per_prompt = 2  lr = 1e-5 }}
}}
'''


def _only(text: str, code: str) -> Diagnostic:
    result = compile_source(text, "g.cascade")
    assert result.plan is None
    assert [d.code for d in result.diagnostics] == [code], [d.message for d in result.diagnostics]
    return result.diagnostics[0]


def _at(text: str, d: Diagnostic) -> str:
    return _text(text, d.span)


def _text(text: str, span: Span | None) -> str:
    assert span is not None
    return text[span.start:span.end]


def _load_script():
    spec = importlib.util.spec_from_file_location("gen_gym_registry", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_registry_file_matches_the_installed_reasoning_gym() -> None:
    pytest.importorskip("reasoning_gym")
    script = _load_script()
    expected = script.render(*script.read_installed())
    assert script.REGISTRY.read_text(encoding="utf-8") == expected, (
        "cascadec/gym_registry.json disagrees with the installed reasoning-gym; "
        "run `python scripts/gen_gym_registry.py` and review the diff")


def test_every_generator_takes_the_keys_that_gym_consumes() -> None:
    # the runtime passes size and seed to every generator's config (runtime/data.py `_load_gym`)
    registry = load_registry()
    assert len(registry.generators) > 50
    lacking = [name for name, keys in registry.generators.items() if not CONSUMED_KEYS <= set(keys)]
    assert lacking == []


def test_consumed_keys_are_exactly_the_ones_the_model_takes_out_of_gym() -> None:
    result = compile_source(_spec('gym("basic_arithmetic", size = 3, seed = 4, max_terms = 2, min_terms = 2)'),
                            "g.cascade")
    assert result.ok, [d.message for d in result.diagnostics]
    data = result.plan.domains["arith"].train
    assert (data.name, data.size, data.seed, data.args) == ("basic_arithmetic", 3, 4, {"max_terms": 2, "min_terms": 2})
    assert {"size", "seed"} == CONSUMED_KEYS


def test_misspelt_generator_name_points_at_the_name_and_suggests_the_right_one() -> None:
    text = _spec('gym("basic_arithmetc", size = 100, seed = 1)')
    d = _only(text, "CAS318")
    assert _at(text, d) == '"basic_arithmetc"'
    assert d.message == "unknown reasoning-gym generator `basic_arithmetc`"
    assert d.help == "did you mean `basic_arithmetic`?"
    assert "reasoning_gym.factory.DATASETS" in d.notes[0]
    assert (d.span.line, d.span.column) == (4, 18)


def test_name_without_a_close_match_says_how_to_list_the_names() -> None:
    text = _spec('gym("zzqqxx")')
    d = _only(text, "CAS318")
    assert d.notes == ()
    assert d.help is not None and "print(*sorted(reasoning_gym.factory.DATASETS))" in d.help
    assert f"{len(load_registry().generators)} names" in d.help


def test_unknown_config_key_in_train_and_eval_gets_a_did_you_mean() -> None:
    text = _spec('gym("basic_arithmetic", size = 10, seed = 1, max_termz = 3)',
                 eval_data='gym("chain_sum", size = 8, seed = 2, min_digit = 1)')
    result = compile_source(text, "g.cascade")
    found = [(d.code, _at(text, d), d.help) for d in result.diagnostics]
    assert found == [("CAS319", "max_termz", "did you mean `max_terms`?"),
                     ("CAS319", "min_digit", "did you mean `min_digits`?")]
    assert result.diagnostics[0].message == "reasoning-gym generator `basic_arithmetic` has no config key `max_termz`"
    secondary = [_text(text, label.span) for label in result.diagnostics[0].labels if not label.primary]
    assert secondary == ['"basic_arithmetic"']


def test_unknown_key_without_a_close_match_lists_the_generators_keys() -> None:
    d = _only(_spec('gym("chain_sum", size = 10, seed = 1, wibble = 3)'), "CAS319")
    fields = load_registry().generators["chain_sum"]
    assert d.help == "valid keys: " + ", ".join(f"`{k}`" for k in fields)


def test_unknown_name_is_not_also_reported_key_by_key() -> None:
    _only(_spec('gym("basic_arithmetc", size = 10, seed = 1, max_termz = 3)'), "CAS318")


def test_gym_reward_names_are_checked_also_inside_combinators() -> None:
    text = _spec('gym("basic_arithmetic", size = 10, seed = 1)',
                 reward='weighted(gym(name = "chain_summ"), math_verify(), weights = [1, 1])')
    d = _only(text, "CAS318")
    assert _at(text, d) == '"chain_summ"' and d.help == "did you mean `chain_sum`?"


def test_malformed_gym_calls_are_left_to_the_model_checks() -> None:
    for train in ("gym(3)", 'gym("a", "b")', "gym()"):
        result = compile_source(_spec(train), "g.cascade")
        assert [d.code for d in result.diagnostics] == ["CAS200"], train


@pytest.mark.parametrize("args", [{"max_terms": 2, "min_terms": 2}, {"max_termz": 2}, {"sise": 2}])
def test_compile_verdict_agrees_with_the_runtime(args: dict[str, int]) -> None:
    pytest.importorskip("reasoning_gym")
    from cascadec.contract.plan import DataSource
    from runtime.data import DataError, load_source

    keywords = "".join(f", {k} = {v}" for k, v in args.items())
    result = compile_source(_spec(f'gym("basic_arithmetic", size = 2, seed = 1{keywords})'), "g.cascade")
    source = DataSource(kind="gym", name="basic_arithmetic", size=2, seed=1, args=args)
    try:
        runtime_ok = len(load_source(source, domain="arith")) == 2
    except DataError:
        runtime_ok = False
    assert result.ok == runtime_ok


def test_compiling_does_not_import_reasoning_gym() -> None:
    spec = _spec('gym("basic_arithmetic", size = 2, seed = 1, max_terms = 2)')
    code = ("import sys; from cascadec.compiler import compile_source; "
            f"r = compile_source({spec!r}); assert r.ok, r.diagnostics; print('reasoning_gym' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_gym_calls_in_an_imported_file_are_checked_there(tmp_path: Path) -> None:
    (tmp_path / "data.cascade").write_text(
        'domain arith {\n  train = gym("chain_sum", size = 10, seed = 1, max_term = 2)\n  reward = gym()\n}\n',
        encoding="utf-8")
    main = tmp_path / "main.cascade"
    main.write_text('import "data.cascade"\ncascade "g" {\n  base = model(tiny(llama, hidden_size = 32))\n'
                    '  stage rl = grpo(base) on arith { steps = 2  prompts_per_step = 2  rollouts_per_prompt = 2 '
                    ' lr = 1e-5 }\n}\n', encoding="utf-8")
    result = compile_file(main)
    assert [(d.code, d.span.path, d.span.line, d.help) for d in result.diagnostics] == [
        ("CAS319", str(tmp_path / "data.cascade"), 2, "did you mean `max_terms`?")]
