"""Named checkpoints from outside the file: parents and teachers, identity in the hashes, tokenizer check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cascadec.compiler import compile_file
from cascadec.model.calls import is_hub_id

SPEC = '''cascade "ext" {{
  base = model("./base")
  checkpoints = {{ teacher = model("./teacher"), prev = run("./other", stage = "sft") }}
  domain d {{ train = inline([{{prompt = "1+1", answer = "2"}}])  reward = exact() }}
  stage rl = grpo({parent}) {{ steps = 1  lr = 1e-6  prompts_per_step = 1  rollouts_per_prompt = 2 }}
  stage opd = distill(rl) {{ steps = 1  lr = 1e-6  prompts_per_step = 1  rollouts_per_prompt = 2
                            teachers {{ d = teacher  default = prev }} }}
}}
'''


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny model saved (with its byte tokenizer) as a local checkpoint directory."""
    from cascadec.contract.plan import ModelRef
    from runtime.models import load_model, save_checkpoint

    root = tmp_path_factory.mktemp("ckpt")
    model, tok = load_model(ModelRef(kind="tiny", name="llama", config={"hidden_size": 16, "num_hidden_layers": 1,
                                                                        "num_attention_heads": 2,
                                                                        "num_key_value_heads": 1,
                                                                        "intermediate_size": 32}))
    save_checkpoint(model, tok, root / "model")
    return root / "model"


def _tree(tmp_path: Path, saved: Path, parent: str = "base") -> Path:
    for name in ("base", "teacher", "other/stages/sft/final"):
        shutil.copytree(saved, tmp_path / name)
    (tmp_path / "other" / "state.json").write_text(json.dumps({"stages": {"sft": {"status": "done"}}}))
    spec = tmp_path / "ext.cascade"
    spec.write_text(SPEC.format(parent=parent))
    return spec


def test_checkpoints_are_parents_and_teachers_and_a_changed_one_reruns_its_dependants(tmp_path, saved, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CASCADEC_CACHE", str(tmp_path / "cache"))
    spec = _tree(tmp_path, saved, parent="prev")
    first = compile_file(spec)
    assert first.plan is not None, [d.message for d in first.diagnostics]
    assert first.plan.stage("rl").parent == "prev" and set(first.plan.checkpoints) == {"teacher", "prev"}
    assert first.plan.checkpoints["teacher"].identity.startswith("sha256:")
    cfg = tmp_path / "teacher" / "config.json"
    cfg.write_text(cfg.read_text().replace('"hidden_size": 16', '"hidden_size": 16 '))
    second = compile_file(spec)
    assert second.plan is not None
    # the changed teacher re-runs the distill stage only; its parent (from `prev`) is unchanged
    assert second.plan.stage("rl").hash == first.plan.stage("rl").hash
    assert second.plan.stage("opd").hash != first.plan.stage("opd").hash


def test_missing_checkpoint_and_unknown_name(tmp_path, saved, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = _tree(tmp_path, saved)
    spec.write_text(spec.read_text().replace('stage = "sft"', 'stage = "rl"'))
    result = compile_file(spec)
    assert [d.code for d in result.diagnostics] == ["CAS325"] and "other/stages/rl/final" in result.diagnostics[0].message
    spec.write_text(SPEC.format(parent="teachr"))
    result = compile_file(spec)
    assert [d.code for d in result.diagnostics] == ["CAS300"] and result.diagnostics[0].help == "did you mean `teacher`?"


def test_a_teacher_with_another_tokenizer_is_found_at_compile_time(tmp_path, saved, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = _tree(tmp_path, saved)
    tok = tmp_path / "teacher" / "tokenizer.json"
    data = json.loads(tok.read_text())
    vocab = data["model"]["vocab"]
    a, b = list(vocab)[10:12]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    tok.write_text(json.dumps(data))
    result = compile_file(spec)
    assert [d.code for d in result.diagnostics] == ["CAS326"]
    assert "2 ids differ" in result.diagnostics[0].notes[0]


def test_a_local_base_model_is_looked_up_from_the_spec_directory_and_a_hub_id_is_not(tmp_path, saved, monkeypatch):
    spec = _tree(tmp_path, saved)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # `./base` is next to the spec, not in the working directory
    plan = compile_file(spec).plan
    assert plan is not None and plan.base.name == str(tmp_path / "base")  # the path the runtime loads
    shutil.rmtree(tmp_path / "base")
    (d,) = compile_file(spec).diagnostics
    assert d.code == "CAS325" and d.span.line == 2 and "base" in d.message and "hub id" in d.help
    spec.write_text(spec.read_text().replace('model("./base")', 'model("org/not-on-this-disk")'))
    assert compile_file(spec).plan is not None


RULE = ("a hub id is `name` or `org/name`, each part of letters, digits, `-`, `_` and `.`, neither starting nor "
        "ending with `-` or `.`, without `--` or `..`, at most 96 characters")


def test_a_name_that_is_neither_local_nor_a_hub_id_is_cas325_for_the_model_its_tokenizer_and_a_checkpoint(
        tmp_path, saved, monkeypatch):
    spec = _tree(tmp_path, saved)
    monkeypatch.chdir(tmp_path)
    text = spec.read_text()
    # the help names only what lints: no local folder that does not exist, no id the Hub rejects
    for written, help in (('model("org/name/extra")', RULE),
                          ('model("./base", tokenizer = "org/name/extra")', RULE),
                          ('model("org/name/")', "did you mean the hub id `org/name`?"),
                          ('model("org//name")', "did you mean the hub id `org/name`?"),
                          ('model("-org/name.")', "did you mean the hub id `org/name`?"),
                          ('model("org/")', "name the repository after the `/`: `org/NAME`"),
                          ('model("org/na me")', RULE), ('model("org/..")', RULE),
                          ('model("x/' + "a" * 200 + '")', RULE),
                          ('model("./base", tokenizer = "a b/c")', RULE)):
        spec.write_text(text.replace('model("./base")', written))
        (d,) = compile_file(spec).diagnostics
        assert d.code == "CAS325" and d.span.line == 2 and "neither a hub id nor a local directory" in d.message
        assert d.help == help, written
    spec.write_text(text.replace('model("./teacher")', 'model("other/stages/sft/final")'))
    (d,) = compile_file(spec).diagnostics  # a model directory next to the spec, written without `./`
    assert d.code == "CAS325" and d.message.startswith("checkpoint `other/stages/sft/final`")
    assert d.help == "did you mean the local directory `./other/stages/sft/final`?"
    spec.write_text(text.replace('model("./teacher")', 'model("other/stages/sft")'))
    (d,) = compile_file(spec).diagnostics  # that directory holds no model: not suggested
    assert d.code == "CAS325" and d.help == RULE
    spec.write_text(text.replace('model("./base")', 'model("org/name", tokenizer = "smollm2-135m-instruct")'))
    assert compile_file(spec).plan is not None


@pytest.mark.parametrize("name", ["org/na me", "org/..", "-org/name", "org/name.", "org/" + "a" * 200, "a b/c", "org/",
                                  "org//name", "/name", "org/a--b", "org/name.git", "", "a/b/c"])
def test_a_name_the_hub_rejects_is_no_hub_id(name):
    assert not is_hub_id(name)


@pytest.mark.parametrize("name", ["gpt2", "Qwen/Qwen3-32B", "HuggingFaceTB/SmolLM2-135M-Instruct", "org/a_b.c-1"])
def test_a_hub_repository_id_is_a_hub_id(name):
    assert is_hub_id(name)


def test_a_tokenizer_directory_without_tokenizer_files_is_cas325_and_an_empty_tokenizer_names_none(
        tmp_path, saved, monkeypatch):
    spec = _tree(tmp_path, saved)
    monkeypatch.chdir(tmp_path)
    text = spec.read_text()
    (tmp_path / "empty").mkdir()
    for written in ("./", "./empty", str(tmp_path / "empty")):
        spec.write_text(text.replace('model("./base")', f'model("./base", tokenizer = "{written}")'))
        (d,) = compile_file(spec).diagnostics
        assert d.code == "CAS325" and d.span.line == 2 and d.message.endswith("has no tokenizer files"), written
        assert "tokenizer.json" in d.notes[-1]
    spec.write_text(text.replace('model("./base")', 'model("./base", tokenizer = "./teacher")'))
    assert compile_file(spec).plan is not None
    spec.write_text(text.replace('model("./base")', 'model("./base", tokenizer = "")'))
    (d,) = compile_file(spec).diagnostics
    assert d.code == "CAS200" and d.message == "`tokenizer` names no tokenizer" and "./`" not in d.help
