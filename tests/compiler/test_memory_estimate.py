"""The per-GPU memory estimate (cascadec.memory_estimate) against hand-computed terms."""

import pytest

from cascadec.memory_estimate import (
    GIB, GPU_MEMORY_MIB, KNOWN_SHAPES, MIB, ModelShape, Workload, estimate, gpu_memory, shape_from_config,
)

SHAPE = ModelShape(params=1000, hidden=8, layers=2, kv_heads=1, head_dim=4, intermediate=16, vocab=50)


def _work(**kw):
    args = dict(tokens_per_micro_batch=10, rollout_sequences=3, rollout_len=7, data_parallel=4, strategy="ddp",
                fp32=False, checkpointing=False, frozen_models=1)
    return Workload(**{**args, **kw})


def test_terms_hand_computed():
    e = estimate(SHAPE, _work())
    assert (e.weights, e.grads, e.optimizer) == (2000, 2000, 12000)
    per_token_layer = 2 * (6 * 8 + 2 * 4 + 4 * 16) + 8 * 8  # 304 bytes
    assert e.activations == 10 * 2 * per_token_layer
    assert e.activations_ckpt == 10 * 2 * 2 * 8 + 10 * per_token_layer
    assert e.logprob_chunk == 3 * 10 * 50 * 4  # fewer tokens than a chunk: only those
    assert e.kv_cache == 3 * 7 * 2 * 2 * 4 * 2
    assert e.frozen == 2000
    assert e.total == 2000 + 2000 + 12000 + e.activations + e.logprob_chunk + e.kv_cache + 2000


@pytest.mark.parametrize("strategy, states", [("ddp", 16000), ("zero1", 4000 + 3000), ("zero2", 2000 + 3500),
                                              ("zero3", 4000), ("fsdp2", 4000)])
def test_sharding(strategy, states):
    e = estimate(SHAPE, _work(strategy=strategy))
    assert e.weights + e.grads + e.optimizer == states


def test_checkpointing_lowers_activations_and_fp32_doubles_widths():
    ckpt = estimate(SHAPE, _work(checkpointing=True))
    assert ckpt.total < estimate(SHAPE, _work()).total
    fp32 = estimate(SHAPE, _work(fp32=True))
    assert (fp32.weights, fp32.optimizer, fp32.frozen) == (4000, 8000, 4000)


def test_shapes_from_configs_match_the_published_parameter_counts():
    llama = KNOWN_SHAPES["meta-llama/llama-3.1-8b-instruct"]
    cfg = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
           "intermediate_size": 14336, "vocab_size": 128256}
    assert shape_from_config(cfg).params == llama.params == 8_030_261_248
    assert shape_from_config({"hidden_size": 8}) is None
    # A dimension of 0 or less is no model: no estimate (it divided by 0 heads: an internal compiler error)
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        for bad in (0, -2):
            assert shape_from_config({**cfg, key: bad}) is None, (key, bad)
    assert shape_from_config({**cfg, "hidden_size": 16}) is None  # head_dim 16 // 32 = 0


def test_gpu_memory_table_and_override():
    assert gpu_memory("h100", None) == 81_559 * MIB and gpu_memory("h200", None) > 139 * GIB
    assert gpu_memory("h100", 40 * GIB) == 40 * GIB and gpu_memory(None, None) is None
    assert {"h100", "h200", "a100", "l40s"} <= set(GPU_MEMORY_MIB)


def test_an_8b_grpo_stage_on_one_h100_does_not_fit_but_zero3_over_8_does():
    shape = KNOWN_SHAPES["qwen/qwen3-8b-base"]
    work = _work(tokens_per_micro_batch=16_384, rollout_sequences=16, rollout_len=8192, data_parallel=8,
                 frozen_models=0, checkpointing=True)
    assert estimate(shape, work).total > gpu_memory("h100", None)
    assert estimate(shape, _work(**{**work.__dict__, "strategy": "zero3"})).total < gpu_memory("h100", None)


def test_the_plan_view_and_cas410_use_the_estimate():
    from cascadec.checks.memory_plan import HF_BATCH_ROWS, stage_estimate
    from cascadec.compiler import compile_source
    from runtime.rollout import DEFAULT_BATCH_ROWS

    assert HF_BATCH_ROWS == DEFAULT_BATCH_ROWS
    spec = ('cascade "m" {{ base = model("Qwen/Qwen3-8B-Base")  resources {{ gpus = 8  {gpu}  strategy = fsdp2 }}\n'
            '  domain d {{ train = gym("basic_arithmetic", size = 64)  reward = gym() }}\n'
            '  stage rl = grpo(base) on d {{ steps = 2  lr = 1e-6  prompts_per_step = 64  max_response = 4k {extra} }} }}')
    small = compile_source(spec.format(gpu="gpu = h200", extra="resources { gradient_checkpointing = on }"), "m.cascade")
    assert not [d for d in small.diagnostics if d.code == "CAS410"]
    est = stage_estimate(small.plan.base, small.plan.stages[0])
    assert est.checkpointing and est.total < gpu_memory("h200", None)
    big = compile_source(spec.format(gpu="gpu = l4", extra=""), "m.cascade")
    [warn] = [d for d in big.diagnostics if d.code == "CAS410"]
    assert "more than a `l4`'s memory (22.5 GiB)" in warn.message
    override = compile_source(spec.format(gpu="gpu = l4  memory_per_gpu = 900GiB", extra=""), "m.cascade")
    assert not [d for d in override.diagnostics if d.code == "CAS410"]
