"""build_engine / select_engine: which rollout engine a stage gets."""

from types import SimpleNamespace

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from cascadec.contract.plan import ModelRef, Resources
from runtime.models import load_model
from runtime.rollout import build_engine, select_engine
from runtime.rollout.hf import HFRolloutEngine

TINY = ModelRef(kind="tiny", name="llama", config={"hidden_size": 32, "intermediate_size": 64,
                                                    "num_hidden_layers": 1, "num_attention_heads": 2,
                                                    "num_key_value_heads": 1})


def fake_ctx(policy, *, device="cuda", strategy="ddp", engine="hf"):
    stage = SimpleNamespace(resources=Resources(strategy=strategy, engine=engine))
    return SimpleNamespace(stage=stage, device=torch.device(device), policy=policy)


@pytest.fixture(scope="module")
def llama():
    return load_model(TINY)[0]


def test_fast_engine_on_cuda_for_llama_unless_zero3(llama, monkeypatch):
    assert select_engine(fake_ctx(llama)) == "fast"
    assert select_engine(fake_ctx(llama, device="cpu")) == "hf"
    # FSDP2 shards are gathered into the engine's own whole copy; ZeRO-3 has no such path.
    assert select_engine(fake_ctx(llama, strategy="fsdp2")) == "fast"
    assert select_engine(fake_ctx(llama, strategy="zero3")) == "hf"
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=16, n_embd=8, n_layer=1, n_head=2, n_positions=16))
    assert select_engine(fake_ctx(gpt2)) == "hf"
    monkeypatch.setenv("CASCADEC_FAST_ROLLOUT", "0")
    assert select_engine(fake_ctx(llama)) == "hf"


def test_vllm_is_chosen_by_the_plan(llama):
    assert select_engine(fake_ctx(llama, device="cpu", engine="vllm")) == "vllm"


def test_cpu_stage_gets_transformers_generate(tmp_path):
    from test_grpo_trainer import make_ctx

    ctx = make_ctx(tmp_path, max_prompt=7)
    engine = build_engine(ctx)
    assert isinstance(engine, HFRolloutEngine) and engine.max_prompt == 7


def test_vllm_without_vllm_is_a_user_error(tmp_path):
    from test_grpo_trainer import make_ctx

    from runtime.rollout.vllm import VLLMUnavailableError

    try:
        from vllm import LLM  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is installed here")
    real = make_ctx(tmp_path)
    stage = real.stage.model_copy(update={"resources": Resources(engine="vllm")})
    ctx = SimpleNamespace(**{**vars(real), "stage": stage})
    with pytest.raises(VLLMUnavailableError, match="set `engine = hf`"):
        build_engine(ctx)
