"""`tiny(...)` configs too large for a tiny model (`cascadec.contract.tiny_size`), odd rotary widths that
transformers only fails on at the first forward, and `rope_scaling` records (`cascadec.contract.tiny_rope`).
The golden files `build_tiny_too_*`, `build_tiny_rope_*` show the diagnostics; here, each hint is applied and
the call passes, and the parameter count is compared with transformers' own models."""

from __future__ import annotations

import time

import pytest

from cascadec.contract.tiny import _build_problem, tiny_problems
from cascadec.contract.tiny_rope import rope_types
from cascadec.contract.tiny_size import MAX_TINY_EXPERTS, MAX_TINY_PARAMS, least_params


def _one(name: str, config: dict) -> tuple[str, str, str | None]:
    [problem] = tiny_problems(name, config)
    return problem.message, problem.hint, problem.key


def _applied(config: dict, hint: str) -> dict:
    """``config`` with a ``write e.g. `key = value``` hint of a plain value applied."""
    key, value = hint.split("`")[1].split(" = ", 1)
    return {**config, key: int(value)}


@pytest.mark.parametrize("config", [{"num_hidden_layers": 100_000}, {"num_hidden_layers": 10**18},
                                    {"hidden_size": 1_000_000, "num_hidden_layers": 1000},
                                    {"vocab_size": 2**63 - 1}, {"intermediate_size": 10**15}])
def test_a_model_too_large_for_a_tiny_one_is_refused_fast_at_its_keys_and_the_hints_pass(config: dict) -> None:
    tiny_problems("llama", {})  # transformers' import is not the check's time
    start = time.monotonic()
    problems = tiny_problems("llama", config)
    assert time.monotonic() - start < 2 and problems
    fixed = dict(config)
    for p in problems:
        assert p.key in config and "a tiny model is a random-weight stand-in for tests" in p.message
        fixed = _applied(fixed, p.hint)
    assert not tiny_problems("llama", fixed)


@pytest.mark.parametrize("name", ["qwen2", "gemma2"])
def test_layers_are_counted_before_a_config_that_lists_a_type_per_layer_is_built(name: str) -> None:
    tiny_problems(name, {})
    start = time.monotonic()
    [problem] = tiny_problems(name, {"num_hidden_layers": 10**12})
    assert time.monotonic() - start < 2 and problem.hint.startswith("write e.g. `num_hidden_layers = 2`")


@pytest.mark.parametrize("name", ["llama", "qwen2", "gpt2", "phi3", "mixtral"])
def test_the_parameter_count_is_a_close_lower_bound_of_the_built_models(name: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(name, vocab_size=1000, hidden_size=128, num_hidden_layers=3,
                                  num_attention_heads=4, tie_word_embeddings=False, pad_token_id=0,
                                  bos_token_id=1, eos_token_id=2)
    with torch.device("meta"):
        built = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    sizes = {a: getattr(config, a, None) for a in ("vocab_size", "hidden_size", "num_hidden_layers",
             "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "num_local_experts",
             "num_experts", "tie_word_embeddings")}
    assert 0.6 * built <= least_params(sizes) <= built


@pytest.mark.parametrize(("name", "key"), [("mixtral", "num_local_experts"), ("qwen2_moe", "num_experts"),
                                         ("deepseek_v3", "n_routed_experts"), ("deepseek_v3", "num_local_experts"),
                                         ("deepseek_v3", "n_shared_experts")])
def test_an_expert_count_beyond_any_real_model_is_refused_at_its_key_and_the_hint_passes(name: str, key: str) -> None:
    message, hint, at = _one(name, {key: 100_000})
    assert at == key and f"more than {MAX_TINY_EXPERTS} experts a layer" in message
    assert not tiny_problems(name, _applied({key: 100_000}, hint))


def test_the_expert_bound_admits_the_real_models_with_the_most_experts() -> None:
    from transformers import Qwen3NextConfig

    assert Qwen3NextConfig().num_experts == MAX_TINY_EXPERTS  # the bound's source
    assert not tiny_problems("qwen3_moe", {"num_experts": MAX_TINY_EXPERTS})
    assert not tiny_problems("deepseek_v3", {"n_routed_experts": 256})


def test_a_real_model_shape_passes_the_bound() -> None:
    # Llama 3.1 405B's shape (126 layers, 16384 wide, 53248 inner, 128 heads, 8 key-value heads)
    sizes = {"vocab_size": 128256, "hidden_size": 16384, "num_hidden_layers": 126, "intermediate_size": 53248,
             "num_attention_heads": 128, "num_key_value_heads": 8, "tie_word_embeddings": False}
    assert 0.6 * 405e9 < least_params(sizes) < MAX_TINY_PARAMS


@pytest.mark.parametrize(("name", "config", "width", "fix"), [
    ("llama", {"hidden_size": 48, "num_attention_heads": 16, "num_key_value_heads": 16}, 3, 64),
    ("qwen2", {"hidden_size": 36, "num_attention_heads": 4, "num_key_value_heads": 2}, 9, 40),
    ("mistral", {"hidden_size": 48, "num_attention_heads": 16, "num_key_value_heads": 16}, 3, 64),
    ("phi3", {"hidden_size": 36, "num_attention_heads": 4, "num_key_value_heads": 4}, 9, 40),
])
def test_an_odd_head_width_transformers_lets_through_is_refused_in_the_spec_words(name, config, width, fix) -> None:
    message, hint, key = _one(name, config)
    assert f"makes heads {width} wide: RoPE turns pairs of dimensions" in message and key == "hidden_size"
    assert hint == f"write e.g. `hidden_size = {fix}`"
    assert not tiny_problems(name, _applied(config, hint))
    assert _build_problem(name, _applied(config, hint), {"vocab_size": 259, "pad_token_id": 0, "bos_token_id": 1,
                                                         "eos_token_id": 2}) is None


def test_an_odd_rotary_part_of_a_partly_rotated_head_is_refused() -> None:
    # phi turns half of each head: 10 wide heads turn 5 dimensions, and the first forward fails
    message, hint, _ = _one("phi", {"hidden_size": 40, "num_attention_heads": 4})
    assert "makes heads 10 wide, of which RoPE turns 5 (`partial_rotary_factor` 0.5)" in message
    assert not tiny_problems("phi", _applied({"hidden_size": 40, "num_attention_heads": 4}, hint))
    assert not tiny_problems("gpt2", {"n_embd": 36, "n_head": 4})  # no RoPE: any width


def test_the_rope_types_are_transformers_own() -> None:
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    assert set(rope_types()) == {"default", *ROPE_INIT_FUNCTIONS}


@pytest.mark.parametrize(("record", "words"), [
    ({"rope_type": "bogus", "factor": 2.0}, 'rope_type = "bogus"` in `rope_scaling` is not a RoPE type'),
    ({"rope_type": "LINEAR", "factor": 2.0}, 'rope_type = "LINEAR"` in `rope_scaling` is not a RoPE type'),
    ([1, 2], "`rope_scaling = [1, 2]` must be a record of RoPE settings"),
    ({"rope_type": "llama3", "factor": 8.0}, "needs `high_freq_factor`, `low_freq_factor` as well"),
    ({"rope_type": "linear"}, 'with `rope_type = "linear"` needs `factor` as well'),
    ({"rope_type": "longrope", "factor": 2.0}, "needs `long_factor`, `short_factor` as well"),
    ({"rope_type": "yarn", "factor": 4.0}, None),
])
def test_rope_scaling_records_are_checked_and_the_written_record_passes(record, words) -> None:
    problems = tiny_problems("llama", {"rope_scaling": record})
    if words is None:  # yarn takes its pre-scaling context from the positions: nothing missing
        assert not problems
        return
    [p] = problems
    assert words in p.message and p.key == "rope_scaling"
    written = p.hint.split("`")[1].removeprefix("rope_scaling = ")
    fixed = eval(written.replace("{", "dict(").replace("}", ")"))  # noqa: S307 - the spec's record syntax
    assert not tiny_problems("llama", {"rope_scaling": fixed})


def test_a_sliding_window_of_no_tokens_is_refused() -> None:
    message, hint, key = _one("mistral", {"sliding_window": 0})
    assert "`sliding_window = 0` must be at least 1" in message and key == "sliding_window"
    assert not tiny_problems("mistral", _applied({"sliding_window": 0}, hint))
