"""HFRolloutEngine: seeded reproducibility, sampler log-probs, left padding, EOS and truncation."""

import pytest
import torch

from cascadec.contract.plan import ModelRef
from runtime.logprobs import token_logprobs
from runtime.models import load_model
from runtime.rollout.hf import HFRolloutEngine, SeededSampler

torch.set_num_threads(2)

PROMPTS = ["<|im_start|>user\n2+2<|im_end|>\n", "a much longer prompt than the first one"]


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelRef(kind="tiny", name="llama"), seed=0)


def _sample(engine, **kw):
    args = {"n": 3, "max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "seed": 7}
    return engine.generate(PROMPTS, **{**args, **kw})


def test_same_seed_same_rollouts_and_group_layout(tiny):
    engine = HFRolloutEngine(*tiny)
    a, b, c = _sample(engine), _sample(engine), _sample(engine, seed=8)
    assert a.completion_ids == b.completion_ids and a.completion_logprobs == b.completion_logprobs
    assert a.completion_ids != c.completion_ids
    assert len(a) == 6 and a.prompt_ids[0] == a.prompt_ids[2] != a.prompt_ids[3]


def test_model_mode_is_restored(tiny):
    model, tok = tiny
    model.train()
    _sample(HFRolloutEngine(model, tok))
    assert model.training


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_logprobs_are_the_sampling_distribution(tiny, temperature):
    model, tok = tiny
    # a model default that generate would otherwise apply on top of the sampler
    model.generation_config.repetition_penalty = 1.5
    try:
        batch = _sample(HFRolloutEngine(model, tok), temperature=temperature)
    finally:
        model.generation_config.repetition_penalty = 1.0
    for prompt, comp, lps in zip(batch.prompt_ids, batch.completion_ids, batch.completion_logprobs):
        ids = torch.tensor([prompt + comp])
        mask = torch.tensor([[0] * len(prompt) + [1] * len(comp)])
        with torch.no_grad():
            want = token_logprobs(model, ids, torch.ones_like(ids), mask, temperature=temperature).logprobs
        torch.testing.assert_close(torch.tensor(lps), want[0, len(prompt):], atol=1e-4, rtol=1e-4)


def test_left_padding_does_not_change_greedy_output(tiny):
    engine = HFRolloutEngine(*tiny)
    together = engine.generate(PROMPTS, n=1, max_new_tokens=5, temperature=0.0, top_p=1.0, top_k=0, seed=0)
    for i, prompt in enumerate(PROMPTS):
        alone = engine.generate([prompt], n=1, max_new_tokens=5, temperature=0.0, top_p=1.0, top_k=0, seed=0)
        assert alone.completion_ids[0] == together.completion_ids[i]
        torch.testing.assert_close(torch.tensor(alone.completion_logprobs[0]),
                                   torch.tensor(together.completion_logprobs[i]), atol=1e-4, rtol=1e-4)


def test_top_k_one_is_greedy_with_zero_logprob(tiny):
    engine = HFRolloutEngine(*tiny)
    greedy = _sample(engine, n=1, temperature=0.0)
    top1 = _sample(engine, n=1, top_k=1, seed=123)
    assert top1.completion_ids == greedy.completion_ids
    assert all(lp == 0.0 for row in top1.completion_logprobs for lp in row)


def test_eos_ends_completion_and_clears_truncated(tiny):
    model, tok = tiny
    greedy = _sample(HFRolloutEngine(model, tok), n=1, temperature=0.0, max_new_tokens=6)
    assert greedy.truncated == [True, True] and all(len(c) == 6 for c in greedy.completion_ids)
    stop = greedy.completion_ids[0][2]
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = stop
    try:
        stopped = _sample(HFRolloutEngine(model, tok), n=1, temperature=0.0, max_new_tokens=6)
    finally:
        model.generation_config.eos_token_id = saved
    first = greedy.completion_ids[0].index(stop)
    assert stopped.completion_ids[0] == greedy.completion_ids[0][: first + 1]
    assert stopped.truncated[0] is False
    assert len(stopped.completion_logprobs[0]) == first + 1


def test_top_p_keeps_the_smallest_nucleus():
    sampler = SeededSampler(temperature=1.0, top_p=0.7, top_k=0, generator=torch.Generator())
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    warped = sampler.warp(probs.log())
    # 0.5 < 0.7, so the second token is needed; 0.5 + 0.3 >= 0.7, so the rest go.
    assert torch.isfinite(warped).tolist() == [[True, True, False, False]]
    assert torch.softmax(warped, -1)[0, 0].item() == pytest.approx(0.5 / 0.8)


def test_bad_sampling_parameters_are_rejected():
    with pytest.raises(ValueError, match="top_p=0"):
        SeededSampler(temperature=1.0, top_p=0.0, top_k=0, generator=torch.Generator())


def test_a_group_prefills_its_prompt_once_and_samples_as_without_sharing(tiny):
    model, tok = tiny
    engine = HFRolloutEngine(model, tok)
    prefill_rows = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kw: prefill_rows.append(kw["input_ids"].shape) if kw.get("use_cache") and
        kw["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    try:
        shared = _sample(engine)
    finally:
        hook.remove()
    assert prefill_rows and prefill_rows[0][0] == len(PROMPTS)
    engine._shared_prefill = lambda *_: None
    alone = _sample(engine)
    assert shared.completion_ids == alone.completion_ids
    for a, b in zip(shared.completion_logprobs, alone.completion_logprobs):
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-5, rtol=1e-5)
