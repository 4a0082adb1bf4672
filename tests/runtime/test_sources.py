"""Data sources through tables and `datasets`: formats, folders, split slicing, nested columns, the offline
hub cache, chat-list prompts, shuffle and seed."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cascadec.contract.plan import DataSource
from cascadec.contract.tables import TableError, get_path, parse_split, read_table
from runtime.data import DataError, MixtureSampler, load_source

ROWS = [{"prompt": f"q{i}", "reward_model": {"ground_truth": str(i), "style": "rule"},
         "extra_info": {"index": i}} for i in range(10)]


def _parquet(path: Path, rows=ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("split, want", [
    ("train", list(range(10))), ("train[:3]", [0, 1, 2]), ("train[-2:]", [8, 9]), ("train[:-8]", [0, 1]),
    ("train[20%:40%]", [2, 3]), ("train[5:5]", []),
])
def test_split_slices_as_datasets_does(split, want):
    assert parse_split(split).apply(list(range(10))) == want


def test_bad_split_is_a_clear_error():
    with pytest.raises(TableError, match=r"NAME\[START:STOP\]"):
        parse_split("train+test")


def test_nested_paths():
    row = {"a": {"b": [{"c": 1}]}, "x.y": 2}
    assert get_path(row, "a.b.0.c") == 1 and get_path(row, "x.y") == 2 and get_path(row, "a.z", None) is None


def test_parquet_with_nested_columns_and_held_out_slices(tmp_path):
    path = _parquet(tmp_path / "d.parquet")
    fields = {"answer": "reward_model.ground_truth"}
    train = load_source(DataSource(kind="parquet", path=str(path), split="train[:-3]", fields=fields), domain="m")
    held = load_source(DataSource(kind="parquet", path=str(path), split="train[-3:]", fields=fields), domain="m",
                       split="eval/held")
    assert [s.answer for s in train] == [str(i) for i in range(7)] and [s.answer for s in held] == ["7", "8", "9"]
    assert train[0].meta["extra_info"] == {"index": 0} and train[0].meta["reward_model"]["style"] == "rule"


def test_hub_layout_folder_reads_the_split_files(tmp_path):
    _parquet(tmp_path / "ds/data/train-00000-of-00001.parquet", ROWS[:6])
    _parquet(tmp_path / "ds/data/test-00000-of-00001.parquet", ROWS[6:])
    assert len(read_table(str(tmp_path / "ds"), split="train")) == 6
    assert [r["prompt"] for r in read_table(str(tmp_path / "ds"), split="test[:1]")] == ["q6"]


def test_csv_json_jsonl_and_arrow(tmp_path):
    (tmp_path / "a.csv").write_text("prompt,answer\nq,1\n")
    (tmp_path / "a.json").write_text(json.dumps([{"prompt": "q", "answer": "1"}]))
    (tmp_path / "a.jsonl").write_text('{"prompt": "q", "answer": "1"}\n')
    with pa.OSFile(str(tmp_path / "a.arrow"), "wb") as sink:
        table = pa.Table.from_pylist([{"prompt": "q", "answer": "1"}])
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    for name in ("a.csv", "a.json", "a.jsonl", "a.arrow"):
        rows = read_table(str(tmp_path / name))
        assert [(r["prompt"], str(r["answer"])) for r in rows] == [("q", "1")], name


def test_saved_dataset_dict_with_split_slicing(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)})
    dd.save_to_disk(str(tmp_path / "saved"))
    src = DataSource(kind="hf_disk", path=str(tmp_path / "saved"), split="train[:2]")
    assert [s.prompt for s in load_source(src, domain="d")] == ["q0", "q1"]


def test_bad_files_are_data_errors(tmp_path):
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="cannot read .*bad.parquet"):
        load_source(DataSource(kind="parquet", path=str(tmp_path / "bad.parquet")), domain="d")
    with pytest.raises(DataError, match="does not exist"):
        load_source(DataSource(kind="parquet", path=str(tmp_path / "none.parquet")), domain="d")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A datasets cache holding `org/tiny` as a hub download leaves it (prepared arrow files)."""
    import datasets.config
    from datasets.packaged_modules.parquet.parquet import Parquet
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    src = _parquet(tmp_path / "src/train.parquet", [{"messages": [{"role": "system", "content": "S"},
                                                                  {"role": "user", "content": f"u{i}"}],
                                                     "sol": str(i)} for i in range(5)])
    builder = Parquet(dataset_name="org___tiny", config_name="default", config_id="default", hash="abc",
                      data_files={"train": str(src)}, cache_dir=str(tmp_path / "datasets"))
    builder.download_and_prepare()
    for f in glob.glob(os.path.join(builder.cache_dir, "org___tiny-*")):
        os.rename(f, f.replace("org___tiny-", "tiny-"))
    return tmp_path


def test_hub_dataset_from_the_offline_cache_with_chat_prompts(hub_cache):
    src = DataSource(kind="hf", name="org/tiny", split="train[:-2]", fields={"prompt": "messages", "answer": "sol"})
    samples = load_source(src, domain="chat")
    assert [s.prompt for s in samples] == ["u0", "u1", "u2"] and samples[2].answer == "2"
    assert samples[0].messages == ({"role": "system", "content": "S"}, {"role": "user", "content": "u0"})


def test_absent_hub_dataset_names_the_cache(hub_cache):
    with pytest.raises(DataError) as err:
        load_source(DataSource(kind="hf", name="org/absent", subset="main"), domain="d")
    text = str(err.value)
    assert "not in the local cache" in text and str(hub_cache / "datasets") in text and "help:" in text


def test_chat_list_errors_are_located():
    bad = DataSource(kind="inline", rows=[{"prompt": [{"role": "robot", "content": "x"}]}])
    with pytest.raises(DataError, match="inline row 1 .*role `robot`"):
        load_source(bad, domain="d")
    no_user = DataSource(kind="inline", rows=[{"prompt": [{"role": "system", "content": "x"}]}])
    with pytest.raises(DataError, match="no user turn"):
        load_source(no_user, domain="d")
    parts = DataSource(kind="inline", rows=[{"prompt": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                                       {"type": "text", "text": "b"}]}]}])
    assert load_source(parts, domain="d")[0].prompt == "ab"


def test_shuffle_off_keeps_order_and_a_source_seed_changes_it():
    data = {"d": load_source(DataSource(kind="inline", rows=[{"prompt": str(i)} for i in range(6)]), domain="d")}
    ordered = MixtureSampler(data, {"d": 1.0}, 6, seed=0, order={"d": (False, 0)})
    assert [s.prompt for s in ordered.batch(0)] == [str(i) for i in range(6)]
    a = [s.prompt for s in MixtureSampler(data, {"d": 1.0}, 6, seed=0).batch(0)]
    b = [s.prompt for s in MixtureSampler(data, {"d": 1.0}, 6, seed=0, order={"d": (True, 7)}).batch(0)]
    assert sorted(a) == sorted(b) and a != b

