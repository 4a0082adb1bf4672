"""``tiny(NAME, key = value, ...)`` is checked before a model is built: a misspelt model type or config key,
a non-positive size or a value transformers rejects is a ModelLoadError naming it (findings 7 and 8), and a
run shows that message at the base-model evals, before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from cascadec_runtime_plans import TINY, console, tiny_plan, write_build

from cascadec.contract.plan import ModelRef
from cascadec.contract.tiny import BYTE_TOKENS, build_problems, tiny_problems
from runtime.models import ModelLoadError, byte_tokenizer, check_tiny, load_model
from runtime.orchestrator import run
from runtime.state import RunDir


def load_error(name: str, **config) -> str:
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRef(kind="tiny", name=name, config=config))
    return str(err.value)


def test_misspelt_model_type_suggests_the_close_one_in_a_short_message() -> None:
    text = load_error("lama")
    assert "tiny model `lama`: not a transformers model type" in text
    assert "help: did you mean `llama`?" in text
    assert len(text) < 400  # not the list of every transformers model type


def test_model_type_without_a_causal_lm_class_is_refused() -> None:
    assert "`t5`: not a causal language model" in load_error("t5")


def test_misspelt_config_key_is_refused_with_did_you_mean() -> None:
    text = load_error("llama", hiden_size=32, num_hidden_layers=1)
    assert "unknown config key `hiden_size`" in text and "help: did you mean `hidden_size`?" in text


@pytest.mark.parametrize("value", [-32, 0])
def test_non_positive_size_names_the_key(value: int) -> None:
    text = load_error("llama", hidden_size=value)
    assert f"`hidden_size = {value}` must be a positive size" in text and "help:" in text


def test_wrong_value_types_name_the_key() -> None:
    assert '`hidden_size = "abc"` must be an integer' in load_error("llama", hidden_size="abc")
    assert "`tie_word_embeddings = 1` must be true or false" in load_error("llama", tie_word_embeddings=1)


def test_values_transformers_rejects_are_a_model_load_error() -> None:
    text = load_error("llama", hidden_size=32, num_attention_heads=5, num_key_value_heads=5)
    assert "`hidden_size = 32` is not a multiple of `num_attention_heads = 5`" in text
    assert text.count("\n") == 1  # one line saying what is wrong, one help line


def test_known_keys_aliases_and_consumed_keywords_pass() -> None:
    check_tiny(TINY)
    check_tiny(ModelRef(kind="tiny", name="gpt2", config={"n_embd": 32, "hidden_size": 32}))  # attribute_map
    check_tiny(ModelRef(kind="tiny", name="llama", config={"rope_theta": 5e5}))  # folded into rope_parameters
    model, _ = load_model(ModelRef(kind="tiny", name="qwen2", config={"hidden_size": 32, "num_hidden_layers": 1,
                                                                       "num_attention_heads": 2,
                                                                       "num_key_value_heads": 1}))
    assert model.config.hidden_size == 32


@pytest.mark.usefixtures("toy_env")
def test_run_with_a_misspelt_key_fails_at_the_base_evals_with_the_message(tmp_path: Path) -> None:
    plan = tiny_plan(base=ModelRef(kind="tiny", name="llama", config={**TINY.config, "hiden_size": 32}))
    rd = RunDir(tmp_path / "run")
    out = console()
    rc = run(write_build(tmp_path, plan), rd.root, console=out)
    text = out.file.getvalue()
    assert rc == 1, text
    assert "unknown config key `hiden_size`" in text and "did you mean `hidden_size`?" in text, text
    assert "Traceback" not in text
    assert not rd.final("s1").exists() and "s1" not in rd.read_state()["stages"]


def test_the_byte_tokenizer_gives_a_tiny_config_what_the_compiler_checks_with() -> None:
    tok = byte_tokenizer()
    assert {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id} == BYTE_TOKENS


def test_native_key_names_are_not_overridden_by_the_tiny_defaults() -> None:
    model, _ = load_model(ModelRef(kind="tiny", name="gpt2", config={"n_embd": 32, "n_layer": 1, "n_head": 2}))
    assert (model.config.n_embd, model.config.n_layer, model.config.n_head) == (32, 1, 2)


def test_a_vocabulary_smaller_than_the_tokenizer_is_a_model_load_error() -> None:
    assert "smaller than its tokenizer's 259 tokens" in load_error("llama", vocab_size=10)


@pytest.mark.parametrize(("config", "words"), [({"rope_theta": -1.0}, "`rope_theta = -1.0` must be positive"),
                                               ({"rms_norm_eps": 0.0}, "`rms_norm_eps = 0.0` must be positive"),
                                               ({"rope_scaling": {"factor": 2.0}}, "transformers ignores it")])
def test_values_transformers_accepts_but_that_break_or_do_nothing_are_refused_before_loading(config, words) -> None:
    assert words in load_error("llama", **config)


def test_the_checks_leave_the_spec_config_as_written() -> None:
    # transformers writes `rope_type`, `rope_theta` and `original_max_position_embeddings` into the record it
    # gets: were it the spec's, the model built after the check would differ from the one written
    config = {"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}
    assert not tiny_problems("llama", config) and not build_problems("llama", config, BYTE_TOKENS)
    assert config == {"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}


def test_a_model_too_large_for_a_tiny_one_is_refused_before_anything_is_built() -> None:
    text = load_error("llama", num_hidden_layers=100_000)
    assert "`num_hidden_layers = 100000` makes a tiny model of more than 128 layers" in text
    assert "help: write e.g. `num_hidden_layers = 2`" in text
