"""Chunked token log-probs against the naive full log-softmax."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from runtime.logprobs import last_position, token_logprobs

torch.set_num_threads(2)


def _tiny(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg)


def _naive(model, ids, attn, comp, temperature=1.0):
    logits = model(input_ids=ids, attention_mask=attn).logits.float() / temperature
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    taken = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    ent = -(logp.exp() * logp).sum(-1)
    zero = torch.zeros(ids.shape[0], 1)
    mask = comp.clone().bool()
    mask[:, 0] = False
    return torch.cat([zero, taken], 1) * mask, torch.cat([zero, ent], 1) * mask


@pytest.mark.parametrize("chunk", [1, 5, 1024])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_matches_naive(chunk, temperature):
    model = _tiny()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 61, (3, 11), generator=gen)
    attn = torch.ones_like(ids)
    attn[2, 8:] = 0  # right padding on one row
    comp = torch.zeros_like(ids)
    comp[:, 5:] = 1
    comp[2, 8:] = 0
    got = token_logprobs(model, ids, attn, comp, chunk=chunk, temperature=temperature, with_entropy=True)
    want_lp, want_ent = _naive(model, ids, attn, comp, temperature)
    torch.testing.assert_close(got.logprobs, want_lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.entropy, want_ent, atol=1e-5, rtol=1e-5)
    assert (got.logprobs[:, :5] == 0).all() and (got.logprobs[2, 8:] == 0).all()


def test_a_frozen_model_s_head_gets_a_contiguous_input():
    """The head of a frozen teacher sees one contiguous position per row: with the int ``logits_to_keep=1``
    it got the strided ``hidden[:, -1:]``, which ``torch.matmul`` answers by expanding the head to
    ``[B, H, V]`` (seconds per scoring batch at a real vocabulary)."""
    model = _tiny().eval().requires_grad_(False)
    seen = []
    model.get_output_embeddings().register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    ids = torch.randint(0, 61, (3, 11), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        got = token_logprobs(model, ids, torch.ones_like(ids), torch.ones_like(ids), chunk=4)
    assert [tuple(x.shape) for x in seen] == [(3, 1, 32)] and seen[0].is_contiguous()
    torch.testing.assert_close(got.logprobs, _naive(model, ids, torch.ones_like(ids), torch.ones_like(ids))[0])
    assert last_position(ids).tolist() == [10]


def test_gradient_matches_naive():
    model = _tiny()
    ids = torch.randint(0, 61, (2, 9), generator=torch.Generator().manual_seed(2))
    attn = torch.ones_like(ids)
    comp = torch.ones_like(ids)
    token_logprobs(model, ids, attn, comp, chunk=2).logprobs.sum().backward()
    chunked = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    _naive(model, ids, attn, comp)[0].sum().backward()
    for a, p in zip(chunked, model.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-5, rtol=1e-4)


def test_shape_mismatch_is_reported():
    model = _tiny()
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="same \\[B, T\\] shape"):
        token_logprobs(model, ids, torch.ones(2, 4), torch.ones(2, 5))


@pytest.mark.parametrize("with_entropy", [False, True])
def test_kept_logits_give_the_recomputed_gradients_bit_for_bit(monkeypatch, with_entropy):
    """A small batch keeps its forward logits for backward; a large one recomputes them: the same values."""
    from runtime.ops import token_logprobs as op

    gen = torch.Generator().manual_seed(4)
    hidden, weight, bias = (torch.randn(*s, generator=gen, dtype=torch.float64) for s in ((7, 5), (11, 5), (11,)))
    targets = torch.randint(0, 11, (7,), generator=gen)

    def grads(keep_elements: int) -> list[torch.Tensor]:
        monkeypatch.setattr(op, "KEEP_LOGITS_ELEMENTS", keep_elements)
        leaves = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
        lp, ent = op.linear_token_logprobs(leaves[0], leaves[1], targets, bias=leaves[2], temperature=0.7, chunk=3,
                                           with_entropy=with_entropy)
        loss = (lp * torch.arange(7.0)).sum() + (ent.sum() if with_entropy else 0)
        loss.backward(retain_graph=True)
        first = [t.grad.clone() for t in leaves]
        loss.backward()  # a second backward through the same graph recomputes what the first one used up
        assert all(torch.equal(2 * f, t.grad) for f, t in zip(first, leaves))
        return first

    kept, recomputed = grads(7 * 11), grads(0)
    assert all(torch.equal(a, b) for a, b in zip(kept, recomputed))
