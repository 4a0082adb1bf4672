"""`tiny(...)` model configs at compile time (CAS329, with the runtime's rules: `cascadec.contract.tiny`) and
the memory estimate of a partial `tiny(...)` config. The golden files `build_tiny_*` show the diagnostics."""

from __future__ import annotations

import pytest

from cascadec.checks.memory_plan import model_shape
from cascadec.compiler import compile_source
from cascadec.contract.plan import ModelRef
from cascadec.contract.tiny import BYTE_VOCAB_SIZE, TINY_DEFAULTS
from cascadec.memory_estimate import KNOWN_SHAPES


def _spec(tiny: str) -> str:
    return f'''cascade "t" {{
  base = model({tiny})
  domain d {{ train = inline([{{prompt = "1+1", answer = "2"}}])  reward = exact() }}
  stage s = sft(base) {{ steps = 1  lr = 1e-5 }}
}}'''


def _cas329(tiny: str, *, build_data: bool = True) -> list:
    result = compile_source(_spec(tiny), "t.cascade", build_data=build_data)
    return [d for d in result.diagnostics if d.code == "CAS329"]


def test_heads_that_do_not_divide_the_width_are_blamed_on_the_whole_call() -> None:
    tiny = "tiny(llama, hidden_size = 64, num_attention_heads = 5, num_key_value_heads = 5)"
    [d] = _cas329(tiny)
    assert "transformers rejects its config" in d.message and "attention heads" in d.message
    assert (d.span.line, d.span.column, d.span.end_column) == (2, 16, 16 + len(tiny))


@pytest.mark.parametrize("config", ["hidden_size = -32", 'hidden_size = "big"', "tie_word_embeddings = 1",
                                    "num_attention_heads = 0"])
def test_a_bad_value_is_blamed_on_its_keyword(config: str) -> None:
    [d] = _cas329(f"tiny(llama, {config})")
    assert d.span.column == 28 and d.span.end_column == 28 + len(config)
    assert d.help


def test_good_configs_pass_and_an_editor_compile_does_not_import_transformers_for_them() -> None:
    assert not _cas329("tiny(llama, hidden_size = 32, num_hidden_layers = 1)")
    assert not _cas329("tiny(qwen2, rope_theta = 500000.0)")
    assert not _cas329("tiny(lama)", build_data=False)  # checked by lint and run, not on every keystroke


def test_a_partial_tiny_config_has_a_shape_from_the_runtime_defaults() -> None:
    shape = model_shape(ModelRef(kind="tiny", name="llama", config={"hidden_size": 32}))
    assert shape is not None
    assert (shape.hidden, shape.layers, shape.vocab) == (32, TINY_DEFAULTS["num_hidden_layers"], BYTE_VOCAB_SIZE)
    packaged = model_shape(ModelRef(kind="tiny", name="llama", tokenizer="smollm2-135m-instruct"))
    assert packaged is not None and packaged.vocab == KNOWN_SHAPES["smollm2-135m-instruct"].vocab
    assert model_shape(ModelRef(kind="tiny", name="llama", tokenizer="./my-tokenizer")) is None  # vocab unknown
