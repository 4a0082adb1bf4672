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


def test_heads_a_class_validator_refuses_are_put_in_the_spec_words_at_the_key() -> None:
    # llama's `validate_architecture` raises "The hidden size (64) is not a multiple of ..."; qwen2 has none
    for family in ("llama", "qwen2"):
        tiny = f"tiny({family}, hidden_size = 64, num_attention_heads = 5, num_key_value_heads = 5)"
        [d] = _cas329(tiny)
        assert d.message.endswith("`hidden_size = 64` is not a multiple of `num_attention_heads = 5`")
        assert d.help == "write e.g. `hidden_size = 60`"  # 4 heads would not hold the 5 key-value heads
        assert _spec(tiny).splitlines()[1][d.span.column - 1:].startswith("num_attention_heads = 5")
    [d] = _cas329("tiny(llama, hidden_size = 65)")
    assert d.message.endswith("`hidden_size = 65` is not a multiple of `num_attention_heads` (4, the default)")
    assert d.help == "write e.g. `hidden_size = 64`" and d.span.column == 28
    [d] = _cas329("tiny(gpt2, n_head = 5)")  # gpt2's own names, as the spec writes them
    assert d.message.endswith("`n_embd` (64, the default) is not a multiple of `n_head = 5`")
    assert d.help == "write e.g. `n_head = 4`, or `n_embd = 60`"
    [d] = _cas329("tiny(llama, num_attention_heads = 3)")
    assert d.message.endswith("`num_key_value_heads` (2, the default) must divide `num_attention_heads = 3`")
    assert d.help == "write e.g. `num_attention_heads = 4`"  # 1 key-value head: 3 heads still miss the width
    [d] = _cas329("tiny(llama, hidden_size = 96, num_attention_heads = 3)")
    assert d.help == "write e.g. `num_attention_heads = 4`, or add `num_key_value_heads = 1`"
    assert not _cas329("tiny(llama, num_attention_heads = 4, num_key_value_heads = 1)")
    assert not _cas329("tiny(gpt2, n_head = 4, n_embd = 60)")


def test_an_odd_head_width_rope_refuses_is_put_in_the_spec_words_at_the_key() -> None:
    # llama's `validate_rope` raises "RoPE requires an even rotary dimension, but got `head_dim`=5 ..."
    [d] = _cas329("tiny(llama, hidden_size = 20)")
    assert d.message.endswith("`hidden_size = 20` over `num_attention_heads` (4, the default) makes heads 5 wide: "
                              "RoPE turns pairs of dimensions, so a head's width must be even")
    assert d.help == "write e.g. `hidden_size = 24`" and d.span.column == 28
    [d] = _cas329("tiny(qwen3, head_dim = 7)")
    assert d.message.endswith("`head_dim = 7` must be even: RoPE turns pairs of dimensions")
    assert d.help == "write e.g. `head_dim = 8`" and d.span.column == 28
    assert not _cas329("tiny(llama, hidden_size = 24)") and not _cas329("tiny(qwen3, head_dim = 8)")


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


@pytest.mark.parametrize(("tiny", "key", "words"), [
    ("tiny(llama, num_attention_heads = 4, num_key_value_heads = 3)", "num_key_value_heads", "must divide"),
    ("tiny(qwen2, num_attention_heads = 3, num_key_value_heads = 1)", "num_attention_heads",
     "`hidden_size` (64, the default) is not a multiple of `num_attention_heads = 3`"),
    ("tiny(llama, vocab_size = 10)", "vocab_size", "smaller than its tokenizer's 259 tokens"),
    ('tiny(llama, hidden_act = "foo")', "hidden_act", "cannot build or run it"),
])
def test_what_transformers_accepts_but_cannot_build_or_run_is_blamed_on_its_key(tiny: str, key: str,
                                                                                 words: str) -> None:
    [d] = _cas329(tiny)
    assert words in d.message
    assert _spec(tiny).splitlines()[1][d.span.column - 1:].startswith(key)


def test_a_model_that_sees_later_tokens_or_a_composite_type_is_refused() -> None:
    [bert] = _cas329("tiny(bert, hidden_size = 32)")
    assert "not causal" in bert.message and "is_decoder = true" in bert.help
    assert not _cas329("tiny(bert, hidden_size = 32, is_decoder = true)")
    [gemma] = _cas329("tiny(gemma3)")
    assert "composite model type" in gemma.message and "`gemma3_text`" in gemma.help


def test_native_key_names_whole_numbers_for_floats_and_values_as_written() -> None:
    assert not _cas329("tiny(gpt2, n_embd = 32, n_layer = 1, n_head = 2)")
    assert not _cas329("tiny(llama, initializer_range = 1)")
    [d] = _cas329("tiny(llama, num_hidden_layers = true)")
    assert "`num_hidden_layers = true` must be an integer" in d.message


def test_a_size_without_its_key_is_pointed_at() -> None:
    result = compile_source(_spec("tiny(llama, 32)"), "t.cascade")
    [d] = [d for d in result.diagnostics if d.severity == "error"]
    assert d.code == "CAS200" and "one positional argument" in d.message and d.span.column == 28
    assert "hidden_size = 64" in (d.help or "")


def test_a_local_tokenizer_is_resolved_against_the_spec_like_a_local_model(tmp_path) -> None:
    spec = tmp_path / "sub" / "t.cascade"
    text = _spec('tiny(llama), tokenizer = "./tok"')
    [d] = compile_source(text, str(spec)).diagnostics  # a local tokenizer directory must exist
    assert d.code == "CAS325" and d.message == f"tokenizer directory `{tmp_path / 'sub' / 'tok'}` does not exist"
    (tmp_path / "sub" / "tok").mkdir(parents=True)
    [d] = compile_source(text, str(spec)).diagnostics  # and hold a tokenizer
    assert d.code == "CAS325" and d.message.endswith("has no tokenizer files")
    (tmp_path / "sub" / "tok" / "tokenizer.json").write_text("{}")
    result = compile_source(text, str(spec))
    assert result.plan is not None and result.plan.base.tokenizer == str(tmp_path / "sub" / "tok")
    assert compile_source(_spec('tiny(llama), tokenizer = "smollm2-135m-instruct"'),
                          str(spec)).plan.base.tokenizer == "smollm2-135m-instruct"


@pytest.mark.parametrize("config", ["hidden_size = 32GB", "rope_theta = 1e6s"])
def test_a_time_or_memory_unit_in_a_tiny_config_is_cas202(config: str) -> None:
    result = compile_source(_spec(f"tiny(llama, {config})"), "t.cascade", build_data=True)
    [d] = [d for d in result.diagnostics if d.severity == "error"]
    assert d.code == "CAS202" and "takes a plain number" in d.message
    assert not _cas329("tiny(llama, hidden_size = 32, intermediate_size = 1Ki)")  # a count unit is a number


@pytest.mark.parametrize(("tiny", "key"), [("tiny(llama, rope_theta = -1)", "rope_theta"),
                                           ("tiny(qwen2, rope_theta = 0)", "rope_theta"),
                                           ("tiny(llama, rms_norm_eps = 0)", "rms_norm_eps"),
                                           ("tiny(gpt2, layer_norm_epsilon = -1e-5)", "layer_norm_epsilon"),
                                           ("tiny(llama, rope_scaling = {rope_type = \"linear\", factor = 0.5})",
                                            "rope_scaling"),
                                           ("tiny(qwen2, rope_theta = \"abc\")", "rope_theta")])
def test_a_value_whose_meaning_fixes_its_range_is_refused_at_its_key(tiny: str, key: str) -> None:
    [d] = _cas329(tiny)
    assert "must be" in d.message and _spec(tiny).splitlines()[1][d.span.column - 1:].startswith(key)


def test_a_validator_message_is_put_in_the_spec_words() -> None:
    [d] = _cas329("tiny(llama, initializer_range = 2)")
    assert d.message.endswith("`initializer_range = 2` must be at least 0.0 and at most 1.0")
    assert "Validation error" not in d.message and d.help == "write e.g. `initializer_range = 0.02`"


def test_every_independent_problem_of_one_call_is_reported() -> None:
    found = _cas329("tiny(llama, rope_theta = -1, num_hidden_layers = 0, initializer_range = -1, hiden_size = 8)")
    assert [d.span.column for d in found] == [28, 45, 68, 92]


def test_size_hints_quote_the_tiny_model_own_values() -> None:
    [d] = _cas329("tiny(llama, head_dim = 0)")
    assert d.help == "give a whole number of at least 1, e.g. `head_dim = 16`"  # not llama's class default, 128


def test_an_ignored_setting_is_located_and_transformers_log_lines_never_leak(capfd) -> None:
    tiny = "tiny(llama, rope_scaling = {factor = 2.0})"
    [d] = _cas329(tiny)
    assert d.message.endswith("`factor` in `rope_scaling` is not used by the default RoPE (no `rope_type`): "
                              "transformers ignores it")
    assert "rope_parameters" not in d.message and d.span.column == _spec(tiny).splitlines()[1].index("factor") + 1
    assert d.help == 'write `rope_scaling = {rope_type = "linear", factor = 2.0}`, or remove `factor`'
    out, err = capfd.readouterr()
    assert "transformers" not in out + err


def test_an_ignored_rope_entry_under_a_rope_type_is_located_with_the_record_that_is_used() -> None:
    tiny = 'tiny(llama, rope_scaling = {rope_type = "linear", factor = 2.0, foo = 1})'
    [d] = _cas329(tiny)
    assert "`foo` in `rope_scaling` is not used by `rope_type = \"linear\"`" in d.message
    assert d.span.column == _spec(tiny).splitlines()[1].index("foo") + 1
    assert d.help == 'write `rope_scaling = {rope_type = "linear", factor = 2.0}`'
    assert not _cas329('tiny(llama, rope_scaling = {rope_type = "linear", factor = 2.0})')


@pytest.mark.parametrize(("tiny", "stage", "needed"), [
    ("tiny(llama, max_position_embeddings = 16)", "stage s = sft(base) { steps = 1  lr = 1e-5 }", 2048),
    ("tiny(gpt2, n_positions = 64)", "stage s = sft(base) { steps = 1  lr = 1e-5  max_seq = 96 }", 96),
    ("tiny(llama, max_position_embeddings = 64)",
     "stage s = grpo(base) { steps = 1  lr = 1e-5  max_prompt = 48  max_response = 32 }", 80),
])
def test_positions_shorter_than_the_longest_row_the_plan_allows_are_refused(tiny: str, stage: str,
                                                                            needed: int) -> None:
    text = _spec(tiny).replace("stage s = sft(base) { steps = 1  lr = 1e-5 }", stage)
    result = compile_source(text, "t.cascade", build_data=True)
    [d] = [d for d in result.diagnostics if d.code == "CAS329"]
    key = tiny.split(", ")[1].split(" =")[0]
    assert f"{needed} tokens" in d.message and f"= {needed}` or more" in (d.help or "")
    assert d.span.column == text.splitlines()[1].index(key) + 1
    fits = text.replace(tiny.split("= ")[1].rstrip(")"), str(needed))
    assert not [d for d in compile_source(fits, "t.cascade", build_data=True).diagnostics if d.code == "CAS329"]


def test_an_eval_row_counts_its_prompt_as_cut_by_a_stage_with_max_prompt() -> None:
    # a GRPO stage's engine cuts eval prompts to its `max_prompt`: 16 + 60 tokens, past 64 positions, although
    # each setting alone fits
    text = _spec("tiny(llama, max_position_embeddings = 64)").replace(
        "stage s = sft(base) { steps = 1  lr = 1e-5 }",
        "stage s = grpo(base) { steps = 1  lr = 1e-5  max_prompt = 16  max_response = 16 }").replace(
        "reward = exact() }",
        'reward = exact()\n    eval e = inline([{prompt = "2+2", answer = "4"}]) { max_tokens = 60 } }')
    [d] = [d for d in compile_source(text, "t.cascade", build_data=True).diagnostics if d.code == "CAS329"]
    assert "76 tokens (eval `d.e`'s `max_tokens` + stage `s`'s `max_prompt`)" in d.message
    assert d.help == "write `max_position_embeddings = 76` or more, or lower that setting"
    # without a stage that cuts prompts their length is unknown at lint: `max_tokens` alone is the bound
    sft = text.replace("grpo(base) { steps = 1  lr = 1e-5  max_prompt = 16  max_response = 16 }",
                       "sft(base) { steps = 1  lr = 1e-5  max_seq = 32 }")
    assert not [d for d in compile_source(sft, "t.cascade", build_data=True).diagnostics if d.code == "CAS329"]
    # positions need transformers' config classes: an editor's compile leaves them to lint
    assert not [d for d in compile_source(text, "t.cascade").diagnostics if d.code == "CAS329"]


def test_a_setting_transformers_doubts_but_uses_is_a_warning_that_the_runtime_lets_run() -> None:
    from runtime.models import check_tiny

    tiny = ('tiny(llama, rope_scaling = {rope_type = "yarn", factor = 2.0, '
            'original_max_position_embeddings = 256})')
    result = compile_source(_spec(tiny), "t.cascade", build_data=True)
    [d] = result.diagnostics
    assert (d.code, d.severity) == ("CAS330", "warning") and d.message.endswith(
        "`factor = 2.0` in `rope_scaling` is not `max_position_embeddings / original_max_position_embeddings` = "
        "1024 / 256 = 4.0: YaRN scales the context by the factor as written")
    assert "config.rope_parameters" not in d.message  # the spec's words, not transformers'
    assert result.plan is not None
    check_tiny(result.plan.base)  # no ModelLoadError: the run goes ahead
    for fix in ("factor = 4.0", "original_max_position_embeddings = 512"):
        assert f"`{fix}`" in (d.help or "")
        key, value = fix.split(" = ")
        fixed = tiny.replace("factor = 2.0", f"factor = {value}") if key == "factor" else tiny.replace("= 256", "= 512")
        assert compile_source(_spec(fixed), "t.cascade", build_data=True).diagnostics == []
