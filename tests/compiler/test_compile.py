"""The compiler API end to end: shipped specs, determinism, imports, never raising."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cascadec import compiler
from cascadec.compiler import compile_file, compile_source
from cascadec.report_diagnostics import render_full

from compiler_helpers import ROOT, SHIPPED, with_data


@pytest.mark.parametrize("spec", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_specs_compile_clean(spec: Path) -> None:
    result = compile_file(spec)
    assert result.plan is not None and result.ok, render_full(result.diagnostics, result.sources)
    if spec.parent.name == "specs":
        # the data a reproduction prepares is not shipped: one warning for its folder, and nothing else
        [missing] = result.diagnostics
        assert missing.code == "CAS320" and "the folder `" in missing.notes[0], render_full([missing], result.sources)
        assert os.path.join("specs", "data") in missing.notes[0]


def test_both_paper_specs_are_shipped() -> None:
    names = {p.name for p in SHIPPED}
    assert {"nemotron-cascade-1.cascade", "nemotron-cascade-2.cascade"} <= names


def test_c2_chain_order_teachers_and_side_branch() -> None:
    plan = compile_file(ROOT / "specs/nemotron-cascade-2.cascade").plan
    assert plan is not None
    assert [s.name for s in plan.stages] == ["sft", "rlhf_side", "if_rl", "multi_rl", "mopd", "rlhf", "long_rl",
                                             "code_rl", "swe_agentless", "swe_agentic"]
    mopd = plan.stage("mopd")
    assert {k: t.stage for k, t in mopd.teachers.items()} == {"math": "sft", "chat": "rlhf_side",
                                                              "default": "multi_rl"}
    assert plan.stage("rlhf_side").branch and not plan.stage("multi_rl").branch
    assert plan.stage("if_rl").params.max_response == 49152
    assert plan.stage("rlhf").params.kl == 0.03  # type: ignore[union-attr]
    assert plan.stage("swe_agentic").params.prompts_per_step * plan.stage("swe_agentic").params.rollouts_per_prompt == 1024  # type: ignore[union-attr]


def test_compiling_twice_is_byte_identical() -> None:
    for spec in SHIPPED:
        first, second = compile_file(spec), compile_file(spec)
        assert first.plan is not None and second.plan is not None
        assert first.plan.to_json() == second.plan.to_json()


def test_plan_source_is_the_path_as_given(small: str) -> None:
    plan = compile_source(small, "some/dir/x.cascade").plan
    assert plan is not None and plan.source == "some/dir/x.cascade"


def test_unreadable_file_is_a_diagnostic(tmp_path: Path) -> None:
    result = compile_file(tmp_path / "missing.cascade")
    assert result.plan is None and [d.code for d in result.diagnostics] == ["CAS009"]


def test_internal_errors_become_cas999(monkeypatch: pytest.MonkeyPatch, small: str) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(compiler, "lower", boom)
    result = compile_source(small)
    assert result.plan is None and [d.code for d in result.diagnostics] == ["CAS999"]
    assert "bug" in result.diagnostics[0].message


def test_imports_resolve_relative_to_the_importing_file(tmp_path: Path, small: str) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "shared.cascade").write_text(
        'import "more.cascade"\ndomain extra { train = jsonl("extra.jsonl")  reward = exact() }\n')
    (tmp_path / "lib" / "more.cascade").write_text('defaults grpo { temperature = 0.7 }\n')
    (tmp_path / "lib" / "other.cascade").write_text('import "more.cascade"\n')  # a diamond is not a cycle
    main = tmp_path / "main.cascade"
    main.write_text('import "lib/shared.cascade"\nimport "lib/other.cascade"\n' + small)
    result = compile_file(main)
    assert result.plan is not None, render_full(result.diagnostics, result.sources)
    assert result.plan.domains["extra"].train.path == str(tmp_path / "lib" / "extra.jsonl")
    assert result.plan.stage("rl").params.temperature == 0.7  # type: ignore[union-attr]
    assert set(result.sources) == {str(main), str(tmp_path / "lib" / "shared.cascade"),
                                   str(tmp_path / "lib" / "more.cascade"), str(tmp_path / "lib" / "other.cascade")}


def test_errors_in_one_phase_suppress_later_phases(small: str, tmp_path: Path) -> None:
    # an unknown key (structure phase) must not also produce model or batch diagnostics
    text = small.replace("batch_size = 2", "batch_sise = 2  micro_batch = 3")
    codes = [d.code for d in compile_source(text, with_data(tmp_path)).diagnostics]
    assert codes == ["CAS301"]


def test_all_value_errors_of_one_phase_are_collected(small: str) -> None:
    text = small.replace("lr = 1e-4", "lr = -1").replace("prompts_per_step = 2  lr = 1e-6", "prompts_per_step = 2  lr = 1e-6  top_p = 2")
    codes = sorted(d.code for d in compile_source(text).diagnostics)
    assert codes == ["CAS201", "CAS201"]


def test_the_language_reference_example_compiles_clean(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    example = doc.split("```\n", 2)[1]
    assert example.lstrip().startswith("# two domains")
    without = compile_source(example, str(ROOT / "docs" / "example.cascade"))
    assert [d.code for d in without.diagnostics] == ["CAS320"]  # its data file is the reader's to write
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "math.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n')
    result = compile_source(example, str(tmp_path / "example.cascade"))
    assert result.plan is not None and not result.diagnostics, render_full(result.diagnostics, result.sources)


def test_a_shared_value_error_is_reported_once(small: str) -> None:
    # `resources` and `defaults` apply to every stage; a bad value there is one mistake
    text = small.replace("  domain math", '  resources { gpus = "2" }\n  defaults grpo { top_p = 3 }\n  seed = -1\n  domain math')
    codes = [d.code for d in compile_source(text).diagnostics]
    assert codes == ["CAS200"]
    text = small.replace("  domain math", '  defaults grpo { top_p = 3 }\n  seed = -1\n  domain math')
    codes = [d.code for d in compile_source(text).diagnostics]
    assert codes == ["CAS201", "CAS201"]


def test_a_byte_order_mark_is_not_a_syntax_error(tmp_path: Path, small: str) -> None:
    spec = Path(with_data(tmp_path, "bom.cascade"))
    spec.write_bytes("\ufeff".encode() + small.encode())
    result = compile_file(spec)
    assert result.plan is not None and not result.diagnostics


def test_plan_records_an_absolute_spec_path_relative_to_the_cwd(small: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "sub" / "x.cascade"
    spec.parent.mkdir()
    spec.write_text(small)
    monkeypatch.chdir(tmp_path)
    plan = compile_file(spec.resolve()).plan
    assert plan is not None and plan.source == os.path.join("sub", "x.cascade")
    assert str(tmp_path) not in plan.to_json().replace(str(tmp_path / "sub" / "data"), "")
    assert all(st.origin is not None and st.origin.path == plan.source for st in plan.stages)


def test_a_directory_is_a_diagnostic(tmp_path: Path) -> None:
    (d,) = compile_file(tmp_path).diagnostics
    assert d.code == "CAS009" and "is a directory" in d.message


def test_non_utf8_text_points_at_the_first_bad_byte(tmp_path: Path) -> None:
    spec = tmp_path / "latin1.cascade"
    spec.write_bytes(b'cascade "x" {\n  # caf\xe9\n}\n')
    (d,) = compile_file(spec).diagnostics
    assert d.code == "CAS009" and "byte 0xe9 at line 2, column 8" in d.message
    assert d.span is not None and (d.span.line, d.span.column) == (2, 8)


def test_an_unreadable_file_says_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "secret.cascade"
    spec.write_text('cascade "x" {}\n')

    def denied(self: Path) -> bytes:  # root reads any file whatever its mode, so simulate the refusal
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    (d,) = compile_file(spec).diagnostics
    assert d.code == "CAS009" and "permission denied" in d.message


_INLINE_SPEC = """cascade "x" {
  base = model(packaged("smollm2-135m-instruct"))
  domain a {
    train = inline([{prompt = "1+1", answer = "2"}, {prompt = "2+2", answer = "4", meta = f(g(x = 1))}])
    reward = exact()
  }
  stage s = sft(base) on [a] { steps = 1  lr = 1e-5 }
}
"""


def test_the_ast_is_searched_for_calls_once_per_lint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cascadec import ast

    spec = tmp_path / "x.cascade"
    spec.write_text(_INLINE_SPEC, encoding="utf-8")
    walked: list[object] = []
    real = ast.calls
    monkeypatch.setattr(ast, "calls", lambda node: walked.append(node) or real(node))
    compile_file(spec, build_data=True)
    assert len(walked) == 1 and isinstance(walked[0], ast.Module)
    found = [c.func.name for c in real(walked[0])]
    # outer before inner, in source order, rows' calls included (the duplicate-keyword check reads them)
    assert found == ["model", "packaged", "inline", "f", "g", "exact"]
