"""Token lengths no run can use (CAS201, `cascadec.checks.lengths`): past a learned position table where the
config is known, past 2^24 for every model; only lengths the spec sets. The golden snippets show the messages."""

from __future__ import annotations

import json
from pathlib import Path

from cascadec.compiler import compile_source


def _cas201(base: str, stage: str, extra: str = "") -> list:
    text = f'''cascade "t" {{
  base = model({base})
  {extra}
  domain d {{ train = inline([{{prompt = "1+1", answer = "2"}}])  reward = exact() }}
  {stage}
}}'''
    return [d for d in compile_source(text, "t.cascade").diagnostics if d.code == "CAS201"]


def _sft(length: str) -> str:
    return f"stage s = sft(base) {{ steps = 1  lr = 1e-5  max_seq = {length} }}"


def _gpt2(folder: Path, positions: int) -> str:
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": positions}))
    return f'"{folder}"'


def test_only_lengths_the_spec_sets_are_held_to_a_learned_table(tmp_path: Path) -> None:
    [d] = _cas201(_gpt2(tmp_path, 64), _sft("65"))
    assert "64 learned positions" in d.message and d.span.line == 5
    assert not _cas201(_gpt2(tmp_path, 64), _sft("64"))
    # sft's default `max_seq` (2048) is a cap sized for common models, longer than this table
    assert not _cas201(_gpt2(tmp_path, 64), "stage s = sft(base) { steps = 1  lr = 1e-5 }")


def test_a_rotary_model_may_be_trained_past_its_configured_positions() -> None:
    assert not _cas201("tiny(llama)", _sft("4k"))
    [d] = _cas201("tiny(llama)", _sft("32Mi"))
    assert "2^24" in d.message


def test_a_local_directorys_config_tells_its_position_table(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 128}))
    stage = "stage s = grpo(base) on d { steps = 1  lr = 1e-6  max_prompt = 100  max_response = 100 }"
    [d] = _cas201(f'"{tmp_path}"', stage)
    assert "`max_prompt + max_response` = 100 + 100 = 200" in d.message
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 128}))
    assert not _cas201(f'"{tmp_path}"', stage)


def test_stages_from_a_named_checkpoint_are_not_held_to_the_base_models_table(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    extra = f'checkpoints = {{ big = model("{tmp_path}") }}'
    stage = ("stage s = sft(big) { steps = 1  lr = 1e-5  max_seq = 4k }\n"
             "  stage t = sft(s) { steps = 1  lr = 1e-5  max_seq = 4k }")
    (tmp_path / "gpt2").mkdir()
    base = _gpt2(tmp_path / "gpt2", 1024)
    assert not _cas201(base, stage, extra)
    found = _cas201(base, stage.replace("sft(big)", "sft(base)"), extra)
    assert [d.span.line for d in found] == [5, 6] and all("1,024 learned positions" in d.message for d in found)
