"""Token-budget packing of the RL update: the bins, the layout, and packed gradients equal to padded ones."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from runtime.losses.policy import aggregation_weights, policy_loss
from runtime.packing import micro_batches, pack_rollouts
from runtime.stages.policy_update import forward, per_token, split

torch.set_num_threads(2)


def test_first_fit_decreasing_bins():
    assert pack_rollouts({0: 5, 1: 3, 2: 4, 3: 2}, 8) == [[0, 1], [2, 3]]
    # a rollout over the budget gets a bin of its own; ties keep index order
    assert pack_rollouts({0: 9, 1: 2, 2: 2}, 4) == [[0], [1, 2]]
    assert all(sum({0: 5, 1: 3, 2: 4, 3: 2}[i] for i in b) <= 8 for b in pack_rollouts({0: 5, 1: 3, 2: 4, 3: 2}, 8))


def test_split_into_mini_batches():
    assert split(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split([1], 2) == [[1], []]


def _rollouts(n: int, gen: torch.Generator):
    prompts = [torch.randint(3, 60, (int(torch.randint(2, 6, (1,), generator=gen)),), generator=gen).tolist()
               for _ in range(n)]
    completions = [torch.randint(3, 60, (int(torch.randint(1, 12, (1,), generator=gen)),), generator=gen).tolist()
                   for _ in range(n)]
    return prompts, completions


def test_layout_places_every_completion_token_once():
    gen = torch.Generator().manual_seed(1)
    prompts, comps = _rollouts(6, gen)
    for kw in ({"micro_batch": 4, "max_tokens": None}, {"micro_batch": 1, "max_tokens": 20}):
        seen = []
        for mb in micro_batches(prompts, comps, [0, 2, 3, 5], 0, **kw):
            on = mb.rollout >= 0
            assert torch.equal(on, mb.completion.bool())
            for r, o, t in zip(mb.rollout[on].tolist(), mb.offset[on].tolist(), mb.input_ids[on].tolist()):
                assert comps[r][o] == t
                seen.append((r, o))
            if kw["max_tokens"]:
                assert mb.input_ids.shape[0] == 1 and mb.attention_mask is None
                assert mb.input_ids.shape[1] <= 20 or len(mb.rollouts) == 1
        assert sorted(seen) == sorted((r, o) for r in (0, 2, 3, 5) for o in range(len(comps[r])))


def _tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).float()


def _gradients(model, prompts, comps, adv, old, index, mode, **layout):
    model.zero_grad(set_to_none=True)
    lengths = torch.tensor([len(c) for c in comps], dtype=torch.float32)
    kept = [lengths[i] for i in index]
    norm = float(sum(kept)) if mode == "token_mean" else float(len(index))
    total = 0.0
    for mb in micro_batches(prompts, comps, index, 0, **layout):
        out = forward(model, mb, 1.0, with_entropy=True)
        mask = (mb.rollout >= 0).float()
        w = aggregation_weights(mask, mb.gather(lengths), mode, norm)
        loss = policy_loss(out.logprobs, mb.gather(adv), w, old=mb.gather(old), clip_low=0.2, clip_high=0.28,
                           dual_clip=3.0, entropy=out.entropy, entropy_coef=0.01).loss
        loss.backward()
        total += float(loss.detach())
    return total, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"])
def test_packed_and_padded_gradients_are_equal(mode):
    """The whole update's gradient (clipped ratio, entropy bonus, every aggregation) is the same whether the
    rollouts are padded two per micro-batch or packed under a 24-token budget."""
    model = _tiny_llama()
    gen = torch.Generator().manual_seed(2)
    prompts, comps = _rollouts(10, gen)
    adv = torch.randn(10, generator=gen)
    old = per_token([(-3.0 - torch.rand(len(c), generator=gen)).tolist() for c in comps])
    index = [0, 1, 2, 4, 5, 6, 7, 9]
    padded_loss, padded = _gradients(model, prompts, comps, adv, old, index, mode, micro_batch=2, max_tokens=None)
    packed_loss, packed = _gradients(model, prompts, comps, adv, old, index, mode, micro_batch=1, max_tokens=24)
    assert len(micro_batches(prompts, comps, index, 0, micro_batch=1, max_tokens=24)) < len(index)  # really packed
    assert packed_loss == pytest.approx(padded_loss, abs=1e-5)
    assert max(float(padded[n].abs().max()) for n in padded) > 1e-3  # the comparison is not vacuous
    for name in padded:
        torch.testing.assert_close(packed[name], padded[name], atol=1e-5, rtol=0, msg=name)
