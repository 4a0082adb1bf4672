"""Data sources -> Samples, and the deterministic mixture sampler."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cascadec.contract.plan import DataSource
from runtime.data import DataError, MixtureSampler, Sample, load_source


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_field_mapping_and_meta(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"problem": "1+1?", "solution": "2", "tests": ["t"], "id": "a"},
        {"problem": "2+2?", "solution": "4", "tests": []},
    ])
    src = DataSource(kind="jsonl", path=str(path), fields={"prompt": "problem", "answer": "solution"})
    samples = load_source(src, domain="math")
    assert samples[0] == Sample(id="math/train/a", domain="math", prompt="1+1?", answer="2",
                                meta={"tests": ["t"], "id": "a"})
    assert samples[1].id == "math/train/1" and samples[1].answer == "4"


def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    # JSON allows raw U+2028/U+2029/U+0085 inside strings; only "\n" ends a JSON Lines record.
    rows = [{"prompt": "a\u2028b\u2029c\u0085d", "answer": "1"}, {"prompt": "e\r", "answer": "2"}]
    path = tmp_path / "u.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows), encoding="utf-8")
    samples = load_source(DataSource(kind="jsonl", path=str(path)), domain="d")
    assert [s.prompt for s in samples] == [rows[0]["prompt"], "e\r"]


def test_jsonl_role_columns_go_to_meta_by_role(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": "hi", "reply": "hello"}])
    src = DataSource(kind="jsonl", path=str(path), fields={"prompt": "q", "completion": "reply"})
    (s,) = load_source(src, domain="chat")
    assert s.prompt == "hi" and s.answer is None and s.meta == {"completion": "hello"}


def test_messages_give_prompt_when_no_prompt_column() -> None:
    row = {"messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]}
    src = DataSource(kind="inline", rows=[row], fields={"messages": "messages"})
    (s,) = load_source(src, domain="chat")
    assert s.prompt == "q1" and s.meta["messages"][1]["content"] == "a1"


def test_malformed_row_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok", "answer": 1}\n\n{"prompt": "broken",\n')
    with pytest.raises(DataError) as err:
        load_source(DataSource(kind="jsonl", path=str(path)), domain="math")
    assert f"{path}:3:" in str(err.value) and "malformed JSON" in str(err.value)


def test_missing_prompt_column_names_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "x"}])
    with pytest.raises(DataError) as err:
        load_source(DataSource(kind="jsonl", path=str(path)), domain="math")
    text = str(err.value)
    assert f"{path}:1:" in text and "`prompt`" in text and "`question`" in text and "help:" in text


def test_non_object_row_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: expected a JSON object"):
        load_source(DataSource(kind="jsonl", path=str(path)), domain="m")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_source(DataSource(kind="jsonl", path=str(tmp_path / "nope.jsonl")), domain="math")
    assert "does not exist" in str(err.value) and "`math`" in str(err.value) and "help:" in str(err.value)


def test_size_limits_rows_and_empty_data_is_an_error() -> None:
    rows = [{"prompt": str(i)} for i in range(5)]
    assert len(load_source(DataSource(kind="inline", rows=rows, size=2), domain="d")) == 2
    with pytest.raises(DataError, match="empty"):
        load_source(DataSource(kind="inline", rows=[]), domain="d")


def test_gym_source_keeps_entry_for_its_scorer() -> None:
    samples = load_source(DataSource(kind="gym", name="basic_arithmetic", size=4, seed=3), domain="arith")
    again = load_source(DataSource(kind="gym", name="basic_arithmetic", size=4, seed=3), domain="arith")
    assert [s.prompt for s in samples] == [s.prompt for s in again]
    s = samples[0]
    assert s.id == "arith/train/0" and s.answer == s.meta["entry"]["answer"]
    assert s.meta["metadata"]["source_dataset"] == "basic_arithmetic"
    import reasoning_gym

    score = reasoning_gym.get_score_answer_fn("basic_arithmetic")
    assert score(s.answer, s.meta["entry"]) == 1.0


def test_unknown_gym_generator_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="reasoning-gym cannot create `no_such_task`"):
        load_source(DataSource(kind="gym", name="no_such_task", size=2), domain="x")


def test_hf_disk_without_datasets_or_path_is_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_source(DataSource(kind="hf_disk", path=str(tmp_path / "ds")), domain="x")
    assert "datasets" in str(err.value) or "does not exist" in str(err.value)


def make_data(n_a: int = 10, n_b: int = 7) -> dict[str, list[Sample]]:
    return {
        "a": [Sample(id=f"a/{i}", domain="a", prompt=str(i)) for i in range(n_a)],
        "b": [Sample(id=f"b/{i}", domain="b", prompt=str(i)) for i in range(n_b)],
    }


def test_sampler_is_deterministic_in_seed_and_step_and_order_free() -> None:
    s1 = MixtureSampler(make_data(), {"a": 0.7, "b": 0.3}, batch_size=4, seed=5)
    s2 = MixtureSampler(make_data(), {"a": 0.7, "b": 0.3}, batch_size=4, seed=5)
    forward = [[x.id for x in s1.batch(i)] for i in range(20)]
    # A resumed run asks for step 13 first: it must see the same batch.
    assert [x.id for x in s2.batch(13)] == forward[13]
    assert [[x.id for x in s2.batch(i)] for i in range(20)] == forward
    other = MixtureSampler(make_data(), {"a": 0.7, "b": 0.3}, batch_size=4, seed=6)
    assert [[x.id for x in other.batch(i)] for i in range(20)] != forward


def test_sampler_mixture_matches_weights_and_covers_each_epoch() -> None:
    s = MixtureSampler(make_data(10, 7), {"a": 0.55, "b": 0.45}, batch_size=4, seed=0)
    counts = Counter()
    for step in range(200):
        c = s.counts(step)
        assert sum(c.values()) == 4 and c["a"] >= 2 and c["b"] >= 1  # floor(w * batch) is guaranteed
        counts.update(c)
    assert counts["a"] / 800 == pytest.approx(0.55, abs=0.03)
    drawn = [x.id for step in range(5) for x in s.batch(step) if x.domain == "a"]
    assert len(set(drawn[:10])) == 10  # the first epoch of domain a has no repeats


def test_sampler_rejects_bad_mixtures() -> None:
    with pytest.raises(ValueError, match="no domain"):
        MixtureSampler(make_data(), {"a": 0.0}, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="no data"):
        MixtureSampler(make_data(), {"c": 1.0}, batch_size=2, seed=0)
