"""reward_model and judge rewards with tiny random-init models saved to a temp dir, and injected judges."""

from __future__ import annotations

import math

import pytest
import torch

from cascadec.contract.plan import RewardSpec
from runtime.rewards import RewardError, build_reward
from runtime.rewards.models import aggregate_pairwise, parse_pairwise

torch.set_num_threads(2)
WORDS = ["hello", "world", "good", "bad", "answer", "is", "the", "a", "b", "c"]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", "<eos>", *WORDS])}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


def _config(num_labels: int = 1):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=3 + len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                       num_labels=num_labels, pad_token_id=1, eos_token_id=2, bos_token_id=2)


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rm")
    LlamaForSequenceClassification(_config()).save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("judge")
    LlamaForCausalLM(_config()).save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return str(path)


def test_reward_model_scalar_is_batch_independent(mk, rm_dir):
    r = build_reward(RewardSpec(kind="reward_model", args={"model": rm_dir, "batch_size": 4}))
    s = mk(prompt="hello world")
    comps = ["good answer", "<think>a b c</think>bad", "the answer is good a b c hello world"]
    batch = r([s] * 3, comps)
    single = [r([s], [c])[0] for c in comps]
    assert all(math.isfinite(v) for v in batch)
    assert batch == pytest.approx(single, abs=1e-5)  # padding must not change a pair's score
    assert r([s], ["<think>x</think>bad"]) == pytest.approx([batch[1]], abs=1e-5)  # only the answer is scored
    assert len(set(round(v, 6) for v in batch)) == 3


def test_reward_model_rejects_multi_label_and_bad_path(mk, tmp_path):
    from transformers import LlamaForSequenceClassification

    LlamaForSequenceClassification(_config(num_labels=2)).save_pretrained(tmp_path)
    _tokenizer().save_pretrained(tmp_path)
    r = build_reward(RewardSpec(kind="reward_model", args={"model": str(tmp_path)}))
    with pytest.raises(RewardError, match="2 labels, not 1"):
        r([mk()], ["x"])
    with pytest.raises(RewardError, match="not a Hugging Face model directory"):
        build_reward(RewardSpec(kind="reward_model", args={"model": str(tmp_path / "nope")}))


def test_pairwise_aggregation_and_tie_break():
    # tie 4 vs 4 broken by ranking 2 (response 1 better): 4 + 1.5, 4 - 1.5
    assert aggregate_pairwise(2, [(0, 1, (4.0, 4.0, 2.0))]) == [5.5, 2.5]
    # three responses, all pairs: means over each response's two comparisons
    res = [(0, 1, (5.0, 2.0, 1.0)), (0, 2, (3.0, 3.0, 3.5)), (1, 2, (1.0, 4.0, 6.0))]
    assert aggregate_pairwise(3, res) == [4.0, 1.5, 3.5]
    assert aggregate_pairwise(1, []) == [3.0]


def test_parse_pairwise():
    assert parse_pairwise('thinking... {"score_1": 4, "score_2": 2, "ranking": 2}') == (4.0, 2.0, 2.0)
    assert parse_pairwise("garbage") == (3.0, 3.0, 3.5)
    assert parse_pairwise('{"score_1": 5}') == (5.0, 3.0, 3.5)


def test_judge_pairwise_with_injected_scorer(mk):
    """The injected judge prefers the response containing 'good'; all pairs within each group are judged."""
    calls: list[str] = []

    def fake(prompts):
        calls.extend(prompts)
        out = []
        for p in prompts:
            r1 = p.split("[Response 1]")[1].split("[Response 2]")[0]
            r2 = p.split("[Response 2]")[1].split("Rate each")[0]
            s1, s2 = 4 + ("good" in r1), 4 + ("good" in r2)
            out.append(f'{{"score_1": {s1}, "score_2": {s2}, "ranking": {2 if s1 >= s2 else 5}}}')
        return out

    from runtime.rewards.models import JudgeReward

    r = JudgeReward(generate=fake)
    samples = [mk(id="q/0")] * 3 + [mk(id="q/1")] * 2
    scores = r(samples, ["good", "meh", "<think>good</think>meh", "x", "y"])
    assert len(calls) == 3 + 1
    # group q/0: "good" beats both (5 vs 4 twice) -> 5; the tie meh/meh is broken by ranking 2 -> +1.5/-1.5
    assert scores[:3] == pytest.approx([5.0, (4 + 5.5) / 2, (4 + 2.5) / 2])
    assert scores[3:] == pytest.approx([5.5, 2.5])


def test_judge_pointwise_with_reference(mk, tmp_path, monkeypatch):
    (tmp_path / "fakejudge.py").write_text(
        "def score(prompts):\n    return ['{\"score\": %d}' % (5 if 'good' in p else 1) for p in prompts]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    r = build_reward(RewardSpec(kind="judge", args={"mode": "pointwise", "generate": "fakejudge:score"}))
    assert r([mk(), mk()], ["good", "bad"]) == [5.0, 1.0]


def test_judge_with_tiny_local_model(mk, judge_dir):
    """A random tiny LM cannot emit JSON, so every comparison is a parse failure -> neutral 3.0."""
    r = build_reward(RewardSpec(kind="judge", args={"model": judge_dir, "max_new_tokens": 8}))
    samples = [mk(id="q/0", prompt="hello")] * 3
    assert r(samples, ["good", "bad", "a b c"]) == [3.0, 3.0, 3.0]


def test_judge_reference_and_circular_pairs(mk):
    prompts: list[str] = []

    def fake(ps):
        prompts.extend(ps)
        return ["{}"] * len(ps)

    from runtime.rewards.models import JudgeReward

    r = JudgeReward(generate=fake, pairs="circular", reference={"field": "answer"})
    assert r([mk(id="q", answer="42")] * 4, ["a", "b", "c", "d"]) == [3.0] * 4
    assert len(prompts) == 4 and all("[Reference answer]\n42" in p for p in prompts)


def test_judge_bad_mode():
    with pytest.raises(RewardError, match="mode `triple`"):
        build_reward(RewardSpec(kind="judge", args={"model": "x", "mode": "triple"}))
