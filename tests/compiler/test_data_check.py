"""Data sources at compile time (CAS320, CAS321, CAS322), and `cascadec.contract.datarows` against the runtime's loader."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascadec.checks import data as data_check
from cascadec.compiler import CompileResult, compile_file
from cascadec.contract.datarows import prompt_problem, sft_target_problem
from cascadec.diagnostics import Diagnostic, Span
from cascadec.contract.plan import DataSource
from runtime.data import DataError, load_source


def _spec(train: str, *, kind: str = "grpo", evals: str = "") -> str:
    stage = ("stage s = sft(base) on d { steps = 2  batch_size = 1  lr = 1e-5 }" if kind == "sft" else
             "stage s = grpo(base) on d { steps = 2  prompts_per_step = 1  rollouts_per_prompt = 2  lr = 1e-5 }")
    return f'''cascade "c" {{
  base = model(tiny(llama, hidden_size = 32))
  domain d {{
    train  = {train}
    reward = math_verify()
    {evals}
  }}
  {stage}
}}
'''


def _compile(tmp_path: Path, train: str, *, rows: dict[str, str] | None = None, **kw: Any) -> CompileResult:
    for name, text in (rows or {}).items():
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / name).write_text(text, encoding="utf-8")
    spec = tmp_path / "s.cascade"
    spec.write_text(_spec(train, **kw), encoding="utf-8")
    return compile_file(spec)


def _only(result: CompileResult, code: str) -> Diagnostic:
    assert [d.code for d in result.diagnostics] == [code], [d.message for d in result.diagnostics]
    return result.diagnostics[0]


def _at(result: CompileResult, d: Diagnostic | Span | None) -> str:
    span = d.span if isinstance(d, Diagnostic) else d
    assert span is not None
    return result.sources[span.path][span.start:span.end]


MATH = '{"problem": "1+1", "answer": "2"}\n'


# ---------------------------------------------------------------- missing files and directories


def test_a_missing_file_in_an_existing_directory_is_a_warning_with_the_resolved_path(tmp_path: Path) -> None:
    result = _compile(tmp_path, 'jsonl("data/mathh.jsonl", prompt = "problem")', rows={"math.jsonl": MATH})
    d = _only(result, "CAS320")
    assert d.severity == "warning" and result.plan is not None
    assert _at(result, d) == '"data/mathh.jsonl"'
    assert d.notes == (f"resolved to `{tmp_path / 'data' / 'mathh.jsonl'}`",)
    assert d.help == "did you mean `data/math.jsonl`?"


def test_a_missing_file_without_a_close_name_says_how_to_fix_it(tmp_path: Path) -> None:
    result = _compile(tmp_path, 'jsonl("data/code.jsonl")', rows={"math.jsonl": MATH})
    assert "fix the path" in (_only(result, "CAS320").help or "")


def test_a_file_whose_folder_is_missing_too_is_the_same_located_warning(tmp_path: Path) -> None:
    result = _compile(tmp_path, 'jsonl("nope/nope.jsonl", prompt = "problem")')
    d = _only(result, "CAS320")
    assert d.severity == "warning" and result.plan is not None and _at(result, d) == '"nope/nope.jsonl"'
    assert d.message == "data file `nope/nope.jsonl` does not exist"
    assert d.notes == (f"resolved to `{tmp_path / 'nope' / 'nope.jsonl'}`; the folder `{tmp_path / 'nope'}` does "
                       "not exist",)
    assert "fix the path" in (d.help or "")


def test_the_sources_under_one_missing_folder_are_one_warning(tmp_path: Path) -> None:
    # a spec compiled away from its data (the papers' specs name cluster files): one warning, not one a file
    evals = 'eval e = jsonl("data/c2/eval/aime.jsonl", prompt = "problem")'
    result = _compile(tmp_path, 'jsonl("data/c2/rl/math.jsonl", prompt = "problem")', evals=evals)
    d = _only(result, "CAS320")
    assert _at(result, d) == '"data/c2/rl/math.jsonl"' and d.notes[1] == "1 more data source of this file names a " \
        "path in it"
    assert [_at(result, label.span) for label in d.labels if not label.primary] == ['"data/c2/eval/aime.jsonl"']


def test_a_misspelt_missing_folder_gets_the_existing_one_and_the_help_lints_clean(tmp_path: Path) -> None:
    result = _compile(tmp_path, 'jsonl("dat/math.jsonl", prompt = "problem")', rows={"math.jsonl": MATH})
    assert _only(result, "CAS320").help == "did you mean `data/math.jsonl`?"
    assert _compile(tmp_path, 'jsonl("data/math.jsonl", prompt = "problem")').diagnostics == []


def test_hf_disk_is_only_checked_to_exist(tmp_path: Path) -> None:
    (tmp_path / "data" / "chat_ds").mkdir(parents=True)
    d = _only(_compile(tmp_path, 'hf_disk("data/chat_dss", prompt = "problm")'), "CAS320")
    assert d.message == "dataset directory `data/chat_dss` does not exist" and d.help == "did you mean `data/chat_ds`?"
    assert _compile(tmp_path, 'hf_disk("data/chat_ds", prompt = "problm")').diagnostics == []


def test_paths_resolve_against_the_file_that_names_them(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / "data").mkdir(parents=True)
    (lib / "data" / "math.jsonl").write_text(MATH)
    (lib / "shared.cascade").write_text('domain e { train = jsonl("data/math.jsonl", prompt = "problm")  '
                                        'reward = math_verify() }\n')
    spec = tmp_path / "s.cascade"
    spec.write_text('import "lib/shared.cascade"\n' + _spec('gym("basic_arithmetic", size = 8)'))
    result = compile_file(spec)
    d = _only(result, "CAS321")
    assert d.span is not None and d.span.path == str(lib / "shared.cascade") and d.help == "did you mean `problem`?"


# ---------------------------------------------------------------- the first row of a jsonl file


def test_a_matching_first_row_is_clean_and_only_the_first_row_is_read(tmp_path: Path) -> None:
    rows = {"math.jsonl": "\n  \n" + MATH + "this line is not JSON\n"}
    result = _compile(tmp_path, 'jsonl("data/math.jsonl", prompt = "problem", answer = "answer")', rows=rows)
    assert result.ok and result.diagnostics == []


def test_a_mapped_column_that_is_absent_points_at_the_mapping(tmp_path: Path) -> None:
    result = _compile(tmp_path, 'jsonl("data/math.jsonl", prompt = "problm", answer = "answer")',
                      rows={"math.jsonl": MATH})
    d = _only(result, "CAS321")
    assert _at(result, d) == '"problm"' and d.help == "did you mean `problem`?"
    assert d.notes == (f"`{tmp_path / 'data' / 'math.jsonl'}:1` has the columns `answer`, `problem`",)


def test_a_mapped_column_without_a_close_name_lists_the_columns(tmp_path: Path) -> None:
    result = _compile(tmp_path, 'jsonl("data/math.jsonl", prompt = "problem", id = "uid")', rows={"math.jsonl": MATH})
    assert _only(result, "CAS321").help == "valid columns: `answer`, `problem`"


def test_a_missing_default_prompt_column_suggests_the_mapping(tmp_path: Path) -> None:
    result = _compile(tmp_path, 'jsonl("data/math.jsonl")', rows={"math.jsonl": MATH})
    d = _only(result, "CAS321")
    assert d.message == "the first row of `data/math.jsonl` has no `prompt` column"
    assert _at(result, d) == '"data/math.jsonl"' and d.help == 'map it: `prompt = "problem"`'


def test_a_mapped_messages_column_gives_the_prompt(tmp_path: Path) -> None:
    chat = json.dumps({"messages": [{"role": "user", "content": "hi"}], "answer": "x"}) + "\n"
    result = _compile(tmp_path, 'jsonl("data/chat.jsonl", messages = "messages")', rows={"chat.jsonl": chat})
    assert result.diagnostics == []


def test_an_absent_prompt_mapping_is_reported_once(tmp_path: Path) -> None:
    result = _compile(tmp_path, 'jsonl("data/math.jsonl", prompt = "question")', rows={"math.jsonl": MATH})
    assert _only(result, "CAS321").message.startswith("column `question` (mapped to `prompt`)")


@pytest.mark.parametrize(("text", "message"), [
    ("\n[1, 2]\n", "`{path}:2` is an array, not a JSON object"),
    ('"just text"\n', "`{path}:1` is a string, not a JSON object"),
    ('{"prompt": "a",}\n', ("`{path}:1` is not valid JSON (Expecting property name enclosed in double quotes "
                            "at column 16)")),
    ("\n\n", "data file `{path}` holds no rows"),
    ('{"prompt": 3}\n', "prompt column `prompt` of the first row of `data/x.jsonl` is a number, not a string"),
])
def test_a_first_row_the_runtime_cannot_load(tmp_path: Path, text: str, message: str) -> None:
    d = _only(_compile(tmp_path, 'jsonl("data/x.jsonl")', rows={"x.jsonl": text}), "CAS322")
    assert d.message == message.format(path=tmp_path / "data" / "x.jsonl")


def test_an_unreadable_data_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.jsonl").write_bytes(b'{"prompt": "caf\xe9"}\n')
    (tmp_path / "data" / "dir.jsonl").mkdir()
    assert "cannot read data file" in _only(_compile(tmp_path, 'jsonl("data/x.jsonl")'), "CAS322").message
    assert "cannot read data file" in _only(_compile(tmp_path, 'jsonl("data/dir.jsonl")'), "CAS322").message


def test_sft_rows_need_a_completion_or_an_answer(tmp_path: Path) -> None:
    rows = {"q.jsonl": '{"q": "1+1", "response": "2"}\n'}
    bad = _compile(tmp_path, 'jsonl("data/q.jsonl", prompt = "q")', rows=rows, kind="sft")
    d = _only(bad, "CAS321")
    assert "for SFT stage `s` to train on" in d.message
    assert [_at(bad, label.span) for label in d.labels] == ['"data/q.jsonl"', "s"]
    good = _compile(tmp_path, 'jsonl("data/q.jsonl", prompt = "q", completion = "response")', rows=rows, kind="sft")
    assert good.diagnostics == []
    # GRPO and evals need only a prompt
    assert _compile(tmp_path, 'jsonl("data/q.jsonl", prompt = "q")', rows=rows).diagnostics == []


def test_a_deeply_nested_first_row_is_an_error_not_a_crash(tmp_path: Path) -> None:
    d = _only(_compile(tmp_path, 'jsonl("data/x.jsonl")', rows={"x.jsonl": "[" * 100_000 + "\n"}), "CAS322")
    assert "nests too deeply" in d.message


def test_pipes_and_huge_first_rows_are_left_to_the_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    os.mkfifo(tmp_path / "data" / "pipe.jsonl")  # opening it would block until a writer appears
    assert _compile(tmp_path, 'jsonl("data/pipe.jsonl")').diagnostics == []
    monkeypatch.setattr(data_check, "_MAX_LINE", 8)
    assert _compile(tmp_path, 'jsonl("data/x.jsonl")', rows={"x.jsonl": '{"question": "long"}\n'}).diagnostics == []
    assert _compile(tmp_path, 'jsonl("data/y.jsonl")', rows={"y.jsonl": '{"q":1}\n'}).diagnostics != []


# ---------------------------------------------------------------- inline rows


def test_an_inline_row_with_a_misspelt_prompt_key_points_at_the_key(tmp_path: Path) -> None:
    result = _compile(tmp_path, 'inline([{prompt = "1+2", answer = "3"}, {promt = "1+1", answer = "2"}])')
    d = _only(result, "CAS321")
    assert d.message == "inline row 2 has no `prompt` key" and _at(result, d) == "promt"
    assert d.help == "did you mean `prompt`?"


def test_an_inline_row_without_any_prompt_points_at_the_row(tmp_path: Path) -> None:
    result = _compile(tmp_path, 'inline([{question = "1+1"}, {question = "2+2"}, {prompt = "3+3"}])')
    d = _only(result, "CAS321")
    assert _at(result, d) == '{question = "1+1"}' and d.notes == ("2 of 3 rows lack it (rows 1, 2)",)


def test_an_inline_prompt_must_be_text(tmp_path: Path) -> None:
    result = _compile(tmp_path, 'inline([{prompt = 12, answer = "2"}])')
    assert _at(result, _only(result, "CAS322")) == "12"


def test_inline_sft_rows_need_an_answer_but_eval_rows_do_not(tmp_path: Path) -> None:
    evals = 'eval held = inline([{prompt = "3+3"}]) { metric = pass@1  max_tokens = 8 }'
    result = _compile(tmp_path, 'inline([{prompt = "1+1", answer = "2"}, {prompt = "2+2"}])', kind="sft", evals=evals)
    d = _only(result, "CAS321")
    assert d.message == "inline row 2 has no `completion` or `answer` for SFT stage `s` to train on"
    ok = _compile(tmp_path, 'inline([{prompt = "1+1", completion = "2"}])', kind="sft", evals=evals)
    assert ok.diagnostics == []


# ---------------------------------------------------------------- the shared rule agrees with the runtime

_KEYS = ("prompt", "answer", "q", "completion", "response", "messages", "chat")
_VALUES = st.one_of(st.none(), st.text(max_size=3), st.integers(0, 9),
                    st.just([{"role": "user", "content": "hi"}]))
_ROWS = st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=5)
_FIELDS = st.dictionaries(st.sampled_from(("prompt", "answer", "completion", "messages")), st.sampled_from(_KEYS),
                          max_size=3)


@settings(max_examples=300, deadline=None)
@given(row=_ROWS, fields=_FIELDS)
def test_datarows_agrees_with_the_runtime_loader_and_the_sft_trainer(row: dict[str, Any],
                                                                     fields: dict[str, str]) -> None:
    from runtime.stages.sft import SFTDataError, sft_completion

    source = DataSource(kind="inline", rows=[row], fields=fields)
    try:
        (sample,) = load_source(source, domain="d")
    except DataError as e:
        # a mapped `messages` column is checked for a user turn only when loaded (its content is not a prompt)
        assert prompt_problem(row, fields) is not None or "`messages` has no user turn" in str(e), (row, fields)
        return
    assert prompt_problem(row, fields) is None, (row, fields)
    try:
        sft_completion(sample)
    except SFTDataError:
        assert sft_target_problem(row, fields) is not None, (row, fields)
    else:
        assert sft_target_problem(row, fields) is None, (row, fields)
