"""bf16 on CPU (issue 16): which precision a stage gets, the refusal where the CPU lacks bf16 units, and the
rollout engine's bf16 decode copy of fp32 master weights."""

import copy
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from cascadec.contract.errors import UserError
from cascadec.contract.plan import Resources
from runtime import precision
from runtime.entry import make_accelerator
from runtime.precision import PrecisionError, cpu_flags, cpu_has_bf16, mixed_precision
from runtime.rollout.hf import HFRolloutEngine


@pytest.mark.parametrize(("setting", "cuda", "cpu_bf16", "expected"), [
    ("fp32", True, True, "no"), ("fp32", False, True, "no"),
    ("auto", True, False, "bf16"), ("auto", False, True, "bf16"), ("auto", False, False, "no"),
    ("bf16", True, False, "bf16"), ("bf16", False, True, "bf16"),
])
def test_mixed_precision_table(setting, cuda, cpu_bf16, expected) -> None:
    assert mixed_precision(setting, cuda=cuda, cpu_bf16=cpu_bf16) == expected


def test_bf16_on_a_cpu_without_bf16_units_is_refused_not_fp32() -> None:
    with pytest.raises(PrecisionError, match=r"(?s)without bf16 instructions.*help: set `precision = auto`"):
        mixed_precision("bf16", cuda=False, cpu_bf16=False)
    assert issubclass(PrecisionError, UserError)


def test_cpu_flags_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert {"amx_bf16", "avx512f"} <= cpu_flags(info)
    assert cpu_has_bf16({"avx512_bf16"}) and cpu_has_bf16({"amx_bf16"}) and not cpu_has_bf16({"avx512f"})
    assert cpu_flags(tmp_path / "missing") == set()


def test_cpu_accelerator_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate.state import AcceleratorState

    def accelerator(setting: str) -> str:
        AcceleratorState._reset_state()  # one setting per process, as in a stage process
        return make_accelerator(Resources(device="cpu", precision=setting)).mixed_precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda flags=None: True)
    assert accelerator("bf16") == "bf16" and accelerator("auto") == "bf16" and accelerator("fp32") == "no"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda flags=None: False)
    assert accelerator("auto") == "no"
    with pytest.raises(PrecisionError):
        make_accelerator(Resources(device="cpu", precision="bf16"))


def tiny_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                         eos_token_id=1, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


class ByteTokenizer:
    pad_token_id, eos_token_id = 0, 1

    def encode(self, text, add_special_tokens=False):
        return [b for b in text.encode()]

    def decode(self, ids, skip_special_tokens=True):
        return bytes(i for i in ids if i > 1).decode(errors="replace")


def params_cast(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy whose parameters (not buffers: rotary stays fp32) are ``dtype``."""
    out = copy.deepcopy(model)
    for p in out.parameters():
        p.data = p.data.to(dtype)
    return out


def greedy(engine: HFRolloutEngine) -> list[list[int]]:
    return engine.generate(["abc", "hello"], n=1, max_new_tokens=6, temperature=0.0, top_p=1.0, top_k=0,
                           seed=0).completion_ids


def test_engine_decodes_from_a_bf16_copy_refreshed_by_sync_weights() -> None:
    model = tiny_model()
    engine = HFRolloutEngine(model, ByteTokenizer(), dtype=torch.bfloat16)
    assert engine.decoder is not model
    mine = dict(engine.decoder.named_parameters())
    for name, p in model.named_parameters():
        assert mine[name].dtype == torch.bfloat16 and torch.equal(mine[name], p.to(torch.bfloat16)), name
    # Rotary inverse frequencies keep their fp32 values.
    for name, buf in engine.decoder.named_buffers():
        assert buf.dtype == dict(model.named_buffers())[name].dtype, name
    assert greedy(engine) == greedy(HFRolloutEngine(params_cast(model, torch.bfloat16), ByteTokenizer()))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    stale = {n: p.clone() for n, p in engine.decoder.named_parameters()}
    engine.sync_weights(model)
    moved = dict(engine.decoder.named_parameters())
    assert any(not torch.equal(stale[n], moved[n]) for n in stale), "sync_weights copied nothing"
    for name, p in model.named_parameters():
        assert torch.equal(moved[name], p.to(torch.bfloat16)), name
    assert greedy(engine) == greedy(HFRolloutEngine(params_cast(model, torch.bfloat16), ByteTokenizer()))


def test_engine_without_a_dtype_or_in_the_policy_dtype_keeps_no_copy() -> None:
    model = tiny_model()
    assert HFRolloutEngine(model, ByteTokenizer()).decoder is model
    assert HFRolloutEngine(model, ByteTokenizer(), dtype=torch.float32).decoder is model


def test_grpo_step_in_bf16_keeps_fp32_masters_and_refreshes_the_decode_copy(tmp_path: Path, monkeypatch) -> None:
    from runtime.stages.grpo import GRPOTrainer
    from test_grpo_trainer import BATCH, make_ctx

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda flags=None: True)
    ctx = make_ctx(tmp_path, precision="bf16")
    assert ctx.dtype == torch.bfloat16
    ctx.rewards["toy"] = lambda s, c: [float(i % 2) for i in range(len(c))]
    seen: list[torch.dtype] = []
    linear = ctx.unwrapped_policy().model.layers[0].mlp.down_proj
    linear.register_forward_hook(lambda mod, i, out: seen.append(out.dtype))
    m = GRPOTrainer(ctx).step(0, BATCH)
    # The update's forward ran under bf16 autocast (the rollout ran on the engine's copy, not this module).
    assert seen and set(seen) == {torch.bfloat16}
    assert m["grad_norm"] > 0 and torch.isfinite(torch.tensor(m["loss"]))
    # bf16 decode and bf16-autocast training agree up to bf16 rounding, not exactly.
    assert m["logp_mismatch"] < 0.05
    copy_params = dict(ctx.engine.decoder.named_parameters())
    for name, p in ctx.unwrapped_policy().named_parameters():
        assert p.dtype == torch.float32, name
        assert torch.equal(copy_params[name], p.detach().to(torch.bfloat16)), name
