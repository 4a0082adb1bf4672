"""Per-stage changes against the parent with standard errors (runtime.changes), checked by hand."""

import io
import math

import pytest
from rich.console import Console

from cascadec.contract.plan import DataSource, Domain, ModelRef, Optim, Plan, RewardSpec, Schedule, SFTParams, Stage
from runtime.changes import change, change_table, score_se


def test_standard_errors_by_hand() -> None:
    assert score_se(0.5, 256) == pytest.approx(0.03125)  # sqrt(0.25 / 256)
    assert score_se(0.0, 10) == 0.0 and score_se(1.2, 10) == 0.0 and score_se(0.5, 0) == 0.0
    c = change({"score": 0.6, "n": 100}, {"score": 0.5, "n": 100})
    assert c.delta == pytest.approx(0.1) and not c.paired and not c.clustered
    assert c.se == pytest.approx(math.sqrt(0.24 / 100 + 0.25 / 100))


def rec(items: list) -> dict:
    scored = [v for v in items if v is not None]
    return {"score": sum(scored) / len(scored), "n": len(scored), "item_scores": items}


def test_paired_standard_error_by_hand() -> None:
    # d = [0, 1, 0, 0, 1]: mean 0.4, sd (ddof 1) = sqrt(0.3) = 0.5477, se = 0.5477 / sqrt(5) = 0.2449
    c = change(rec([1, 1, 0, 0, 1]), rec([1, 0, 0, 0, 0]))
    assert c.paired and c.delta == pytest.approx(0.4) and c.se == pytest.approx(0.24495, abs=1e-5)
    # the same scores unpaired: sqrt(0.24 / 5 + 0.16 / 5) = 0.283, larger than the paired 0.245
    assert change({"score": 0.6, "n": 5}, {"score": 0.2, "n": 5}).se == pytest.approx(math.sqrt(0.08))


def test_unscored_items_are_left_out_pairwise() -> None:
    # items 1 (stage) and 3 (parent) are unscored: pairs (1, 0), (0, 0), (1, 1) -> d = [1, 0, 0]
    c = change(rec([1, None, 0, 0.5, 1]), rec([0, 1, 0, None, 1]))
    assert c.paired and c.delta == pytest.approx(1 / 3)
    assert c.se == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))  # var(d) = 1/3 (ddof 1)


def test_items_that_repeat_a_prompt_are_one_cluster() -> None:
    """Items 0 and 2 repeat one prompt, 1 and 3 another: d = [1, 0, 1, 0], mean 0.5, e = [.5, -.5, .5, -.5];
    sd^2 / m = (1/3) / 4; cluster sums (1, -1): (1 + 1 - 4 * 0.25) / 16 = 1/16; se = sqrt(1/12 + 1/16)."""
    groups = [0, 1, 0, 1]
    stage, parent = rec([1, 0, 1, 0]), rec([0, 0, 0, 0])
    c = change({**stage, "item_groups": groups}, {**parent, "item_groups": groups})
    assert c.paired and c.clustered and c.delta == pytest.approx(0.5)
    assert c.se == pytest.approx(math.sqrt(1 / 12 + 1 / 16))
    assert c.se > change(stage, parent).se  # the same items taken as independent
    # each item its own cluster, or groups that do not match (not the same items): the paired error
    alone = change({**stage, "item_groups": [0, 1, 2, 3]}, {**parent, "item_groups": [0, 1, 2, 3]})
    mismatched = change({**stage, "item_groups": groups}, {**parent, "item_groups": [0, 1, 2, 3]})
    for other in (alone, mismatched):
        assert not other.clustered and other.se == pytest.approx(math.sqrt(1 / 3) / 2)


def test_repeating_every_item_three_times_adds_no_information() -> None:
    """5 distinct items, each repeated 3 times with the same scores: the clustered error stays that of the 5
    items (within 2%: Miller's formula keeps the ddof-1 term of the independent error), where the error that
    takes the 15 items as independent shrinks by about sqrt(3)."""
    distinct_stage, distinct_parent = [1, 0, 1, 1, 0], [0, 0, 1, 0, 0]
    d = [a - b for a, b in zip(distinct_stage, distinct_parent)]
    k, mean = len(d), sum(d) / len(d)
    distinct = math.sqrt(sum((x - mean) ** 2 for x in d) / k) / math.sqrt(k)  # the cluster-level error
    groups = list(range(k)) * 3
    stage, parent = rec(distinct_stage * 3), rec(distinct_parent * 3)
    c = change({**stage, "item_groups": groups}, {**parent, "item_groups": groups})
    assert c.clustered and c.se == pytest.approx(distinct, rel=0.02)
    assert c.se > 1.6 * change(stage, parent).se


@pytest.mark.parametrize("stage,parent", [
    ({"score": 0.6, "n": 5}, rec([1, 0, 0, 0, 0])),  # a record from before item scores were recorded
    (rec([1, 1, 0, 0, 1]), rec([1, 0, 0, 0])),  # different lengths: not the same items
    (rec([1, None, None]), rec([0, 0, 0])),  # fewer than 2 items scored in both
])
def test_falls_back_to_the_unpaired_binomial_error(stage, parent) -> None:
    c = change(stage, parent)
    assert not c.paired and c.delta == pytest.approx(stage["score"] - parent["score"])
    unpaired = math.hypot(score_se(stage["score"], stage["n"]), score_se(parent["score"], parent["n"]))
    assert c.se == pytest.approx(unpaired)


def plan() -> Plan:
    dom = Domain(name="a", train=DataSource(kind="inline", rows=[{"prompt": "x", "answer": "1"}]),
                 reward=RewardSpec(kind="exact"))
    params = SFTParams(optim=Optim(lr=Schedule(peak=1e-3)), steps=1)
    stages = [Stage(name="s1", kind="sft", parent="base", domains={"a": 1.0}, params=params),
              Stage(name="s2", kind="sft", parent="s1", domains={"a": 1.0}, params=params)]
    return Plan(name="t", base=ModelRef(kind="tiny", name="llama"), domains={"a": dom}, stages=stages)


def test_table_marks_changes_of_two_standard_errors() -> None:
    points = {"base": {"a.held": {"score": 0.1, "n": 256}}, "s1": {"a.held": {"score": 0.5, "n": 256}},
              "s2": {"a.held": {"score": 0.52, "n": 256}}}
    buf = io.StringIO()
    Console(file=buf, width=120, color_system=None).print(change_table(plan(), points))
    text = buf.getvalue()
    assert "s1 (vs base)" in text and "+0.400 ± 0.036 ▲" in text
    assert "s2 (vs s1)" in text and "+0.020 ± 0.044" in text and "+0.020 ± 0.044 ▲" not in text
    assert "(binomial, unpaired)" in text and "†" not in text
    assert change_table(plan(), {"s2": {"a.held": {"score": 0.5, "n": 8}}}) is None


def render(points) -> str:
    buf = io.StringIO()
    Console(file=buf, width=160, color_system=None).print(change_table(plan(), points))
    return buf.getvalue()


def test_caption_names_the_standard_error_used() -> None:
    base, s1 = rec([0, 0, 0, 0, 0]), rec([1, 1, 1, 1, 0])
    paired = render({"base": {"a.held": base}, "s1": {"a.held": s1}, "s2": {"a.held": rec([1, 1, 1, 1, 1])}})
    assert "(paired over the same items)" in paired and "unpaired" not in paired
    assert "+0.800 ± 0.200 ▲" in paired  # d = [1, 1, 1, 1, 0]: sd sqrt(0.2), se 0.2
    old = {"score": 1.0, "n": 5}  # s2's record predates item scores: its row is unpaired, marked †
    mixed = render({"base": {"a.held": base}, "s1": {"a.held": s1}, "s2": {"a.held": old}})
    assert "+0.800 ± 0.200 ▲" in mixed and "+0.200 ± 0.179 †" in mixed  # sqrt(0.16 / 5) = 0.179
    assert "paired over the same items; †: binomial, unpaired" in " ".join(mixed.split())  # caption wraps


def test_a_records_error_is_clustered_by_its_groups_else_binomial() -> None:
    from runtime.changes import record_se

    plain = rec([1, 0, 1, 0])
    assert record_se(plain) == pytest.approx(score_se(0.5, 4))  # no groups: binomial
    # two clusters (1, 1) and (0, 0): e = [.5, .5, -.5, -.5]; var / m = (1/3) / 4; sums (1, -1): (2 - 1) / 16
    grouped = {**rec([1, 1, 0, 0]), "item_groups": [0, 0, 2, 2]}
    assert record_se(grouped) == pytest.approx(math.sqrt(1 / 12 + 1 / 16))
    assert record_se({**rec([1, None, 0]), "item_groups": [0, 1, 2]}) == pytest.approx(math.sqrt(0.5 / 2))
