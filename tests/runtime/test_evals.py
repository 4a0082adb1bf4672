"""Eval metrics (pass@1, avg@k, pass@k) and the eval runner with a scripted engine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cascadec.contract.plan import DataSource, EvalSpec
from runtime.data import Sample
from runtime.evals import EvalSet, item_groups, item_score, pass_at_k, run_evals
from runtime.rollout.base import RolloutBatch


def test_pass_at_k_matches_the_unbiased_estimator() -> None:
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(4, 3, 2) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_item_score_per_metric() -> None:
    src = DataSource(kind="inline", rows=[{"prompt": "x"}])
    assert item_score(EvalSpec(name="e", data=src), [0.0]) == 0.0
    assert item_score(EvalSpec(name="e", data=src, metric="avg@k", k=4), [1, 0, 1, 0]) == 0.5
    assert item_score(EvalSpec(name="e", data=src, metric="pass@k", k=4), [0, 0, 0.9, 0]) == 1.0


class ScriptedEngine:
    """Answers the sum for prompts whose number is even; records its calls."""

    def __init__(self) -> None:
        self.calls = []
        self.prompts = []

    def generate(self, prompts, *, n, max_new_tokens, temperature, top_p, top_k, seed):
        self.calls.append({"n": n, "temperature": temperature, "max_new_tokens": max_new_tokens})
        self.prompts.extend(p.split("|")[1] for p in prompts)
        texts = []
        for p in prompts:
            value = int(p.split("|")[1])
            for j in range(n):
                texts.append(str(value + 1) if value % 2 == 0 or j == 0 else "?")
        rows = len(texts)
        return RolloutBatch([[0]] * rows, [[1]] * rows, [[0.0]] * rows, [False] * rows, texts)


def fake_ctx(rank: int = 0, world: int = 1):
    engine = ScriptedEngine()
    reward = lambda samples, completions: [float(c == s.answer) for s, c in zip(samples, completions)]  # noqa: E731
    acc = SimpleNamespace(process_index=rank, num_processes=world)
    return SimpleNamespace(accelerator=acc, engine=engine, rewards={"add": reward},
                           render_prompt=lambda s: f"user|{s.prompt}|assistant")


def eval_set(metric: str, k: int = 1) -> EvalSet:
    samples = [Sample(id=f"add/e/{i}", domain="add", prompt=str(i), answer=str(i + 1)) for i in range(4)]
    spec = EvalSpec(name="held", data=DataSource(kind="inline", rows=[{"prompt": "x"}]), metric=metric, k=k,
                    temperature=0.7, max_tokens=5)
    return EvalSet("add", spec, samples)


def test_pass_at_1_is_one_completion_at_the_eval_temperature_and_records_shape() -> None:
    ctx = fake_ctx()
    (rec,) = run_evals(ctx, [eval_set("pass@1")], stage="s1", step=7, seed=0)
    assert rec == {"stage": "s1", "step": 7, "domain": "add", "eval": "held", "metric": "pass@1",
                   "score": 1.0, "n": 4, "item_scores": [1.0, 1.0, 1.0, 1.0], "item_groups": [0, 1, 2, 3]}
    assert ctx.engine.calls == [{"n": 1, "temperature": 0.7, "max_new_tokens": 5}]  # as the spec says


def test_items_that_repeat_a_prompt_share_a_group() -> None:
    samples = [Sample(id=f"d/e/{i}", domain="d", prompt=p) for i, p in enumerate(["3*7", "2*2", "3*7", "7*3"])]
    chat = [Sample(id="d/e/c", domain="d", prompt="3*7", messages=({"role": "user", "content": "3*7"},))]
    assert item_groups(samples + chat) == [0, 1, 0, 3, 4]  # the chat row is another prompt


def test_item_groups_are_computed_once_per_eval_set_not_at_every_eval_point(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime import evals

    spec, calls = eval_set("pass@1").spec, []
    monkeypatch.setattr(evals, "item_groups", lambda samples: calls.append(len(samples)) or item_groups(samples))
    samples = [Sample(id=f"add/e/{i}", domain="add", prompt=p, answer="") for i, p in enumerate("2424")]
    repeated = EvalSet("add", spec, samples)
    ctx = fake_ctx()
    records = [run_evals(ctx, [repeated], stage="s", step=step, seed=0)[0] for step in range(3)]
    assert calls == [4]  # when the set was built
    assert [r["item_groups"] for r in records] == [[0, 1, 0, 1]] * 3 == [item_groups(samples)] * 3


def test_pass_at_1_is_greedy_at_the_default_temperature() -> None:
    ctx = fake_ctx()
    default = eval_set("pass@1")
    run_evals(ctx, [EvalSet("add", EvalSpec(name="held", data=default.spec.data), default.samples)], stage="s",
              step=0, seed=0)
    assert ctx.engine.calls[0]["temperature"] == 0.0 and ctx.engine.calls[0]["n"] == 1


def test_avg_and_pass_at_k() -> None:
    ctx = fake_ctx()
    avg, pk = run_evals(ctx, [eval_set("avg@k", 4), eval_set("pass@k", 4)], stage="s", step=0, seed=0)
    # even items: 4/4 correct; odd items: only the first of 4 samples correct.
    assert avg["metric"] == "avg@4" and avg["score"] == pytest.approx((1 + 0.25 + 1 + 0.25) / 4)
    assert avg["item_scores"] == [1.0, 0.25, 1.0, 0.25]  # one score per item, not per sample
    assert pk["metric"] == "pass@4" and pk["score"] == 1.0 and pk["item_scores"] == [1.0] * 4
    assert ctx.engine.calls[0]["temperature"] == 0.7 and ctx.engine.calls[0]["n"] == 4


def test_each_rank_scores_a_strided_shard_and_reports_the_gathered_score(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime import evals

    local_scores = {}

    def gather(acc, local):
        local_scores[acc.process_index] = local
        return [(0, 1.0), (2, 0.0), (1, 0.5), (3, 0.0)]  # what all ranks together scored, in rank order

    monkeypatch.setattr(evals, "_gather", gather)
    prompts = {}
    for rank in (0, 1):
        ctx = fake_ctx(rank=rank, world=2)
        (rec,) = run_evals(ctx, [eval_set("pass@1")], stage="s", step=0, seed=0)
        assert rec["score"] == pytest.approx(0.375) and rec["n"] == 4
        assert rec["item_scores"] == [1.0, 0.5, 0.0, 0.0]  # item order, not rank order
        prompts[rank] = ctx.engine.prompts
    assert prompts == {0: ["0", "2"], 1: ["1", "3"]}
    assert local_scores == {0: [(0, 1.0), (2, 1.0)], 1: [(1, 1.0), (3, 1.0)]}


def test_item_order_puts_gathered_scores_in_item_order_and_nan_as_none() -> None:
    from runtime.evals import item_order

    assert item_order([(0, 1.0), (2, float("nan")), (1, 0.25)], 3) == [1.0, 0.25, None]
    assert item_order([], 0) == []
    for pairs in ([(0, 1.0), (0, 1.0)], [(0, 1.0)]):  # an item twice or one missing: shards lost their stride
        with pytest.raises(ValueError, match="cover"):
            item_order(pairs, 2)


def test_rank_shards_are_padded_to_one_length_and_cover_every_item_once():
    from runtime.data import Sample
    from runtime.evals import rank_shard

    samples = [Sample(id=f"d/eval/{i}", domain="d", prompt=str(i)) for i in range(7)]
    for world in (1, 2, 3, 8):
        shards = [rank_shard(samples, rank, world) for rank in range(world)]
        # Equal lengths: every rank makes the same number of generate calls (a sharded model's forward is a
        # collective); the real prefixes together are every item exactly once.
        assert len({len(items) for items, _ in shards}) == 1
        real = [s.id for items, n in shards for s in items[:n]]
        assert sorted(real) == sorted(s.id for s in samples)
    assert rank_shard([], 0, 2) == ([], 0)


@pytest.mark.parametrize("metric,k", [("pass@1", 1), ("avg@k", 4), ("pass@k", 4)])
def test_unrouted_items_are_left_out_of_the_score_and_of_n(metric, k) -> None:
    from runtime.routing import RoutedReward

    ctx = fake_ctx()
    exact = ctx.rewards["add"]
    # items 0 and 1 route to `exact`; 2 and 3 have no route: a NaN that must neither count nor score 0
    ctx.rewards["add"] = RoutedReward("id", {"add/e/0": exact, "add/e/1": exact})
    with pytest.warns(RuntimeWarning, match="no route"):
        (rec,) = run_evals(ctx, [eval_set(metric, k)], stage="s", step=0, seed=0)
    want = {"pass@1": 1.0, "avg@k": (1 + 0.25) / 2, "pass@k": 1.0}[metric]
    assert rec["n"] == 2 and rec["score"] == pytest.approx(want)
    assert rec["item_scores"][2:] == [None, None] and None not in rec["item_scores"][:2]


def _two_rank_worker(rank: int, port: int, out: str) -> None:
    import json
    import math
    from pathlib import Path

    from accelerate import PartialState
    from dist_helpers import join_as_rank

    join_as_rank(rank, port)
    ctx = fake_ctx()
    ctx.accelerator = PartialState(cpu=True)  # a real gloo group: accelerate's gather_object, as in a run
    # item i scores i / 10, item 3 has no reward: distinct values show where each item's score landed
    ctx.rewards["add"] = lambda samples, completions: [math.nan if s.prompt == "3" else int(s.prompt) / 10
                                                       for s in samples]
    five = EvalSet("add", eval_set("pass@1").spec,
                   [Sample(id=f"add/e/{i}", domain="add", prompt=str(i), answer="") for i in range(5)])
    (rec,) = run_evals(ctx, [five], stage="s", step=0, seed=0)
    Path(out, f"rank{rank}.json").write_text(json.dumps(rec))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_ranks_record_item_scores_in_item_order(tmp_path) -> None:
    import json

    import torch.multiprocessing as mp
    from dist_helpers import free_port

    # 5 items over 2 ranks: rank 0 scores items 0, 2, 4 and rank 1 items 1, 3 (padded with a copy of item 0)
    mp.spawn(_two_rank_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    recs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert recs[0] == recs[1]
    assert recs[0]["item_scores"] == [0.0, 0.1, 0.2, None, 0.4]
    assert recs[0]["n"] == 4 and recs[0]["score"] == pytest.approx(0.7 / 4)
