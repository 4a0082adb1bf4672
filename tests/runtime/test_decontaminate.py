"""Decontamination (`decontaminate = on`): a domain's training rows equal to an item of its evals are dropped,
reported, recorded, and the training hash follows the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascadec.contract.hashing import hash_plan
from cascadec.contract.plan import DataSource, EvalSpec
from runtime.data import DataError, Sample
from runtime.decontaminate import decontaminate, decontaminate_domains, prompt_key
from runtime.entry import training_rows
from runtime.evals import load_eval_sets
from runtime.orchestrator import check_local_data, run
from runtime.report import load_run, text_report
from runtime.state import RunDir

from cascadec_runtime_plans import console, domain, rows, run_ok, sft_stage, tiny_plan, write_build


def text(i: int, prompt: str) -> Sample:
    return Sample(id=f"d/train/{i}", domain="d", prompt=prompt)


def chat(i: int, *turns: tuple[str, str]) -> Sample:
    messages = tuple({"role": r, "content": c} for r, c in turns)
    last_user = [c for r, c in turns if r == "user"][-1]
    return Sample(id=f"d/train/{i}", domain="d", prompt=last_user, messages=messages)


def test_rows_whose_normalised_user_prompt_equals_an_eval_item_are_dropped() -> None:
    train = [
        text(0, "What is 1 + 1?"),          # equals held[0] once whitespace is collapsed
        text(1, "what is 1 + 1?"),          # case counts
        text(2, "2+2"),                     # `2 + 2` has spaces where this has none: not equal
        chat(3, ("system", "Be brief."), ("user", "Add:\n3 +\t4")),  # user turn only, equals other[0]
        text(4, "5 + 6"),
    ]
    evals = {"held": [text(0, "  What is 1 +   1?\n"), text(1, "2 + 2")], "other": [text(0, "Add: 3 + 4")]}
    kept, report = decontaminate("d", train, evals)
    assert [s.id for s in kept] == ["d/train/1", "d/train/2", "d/train/4"]
    assert report.line() == "d: decontaminated 2 of 5 training rows (equal to an item of d.held or d.other)"
    assert report.record() == {"rows": 5, "dropped": 2, "evals": ["d.held", "d.other"]}
    assert prompt_key(chat(0, ("user", " a \n b "), ("assistant", "x"), ("user", "c"))) == "a b c"


def test_a_domain_without_equal_rows_says_none_was_dropped() -> None:
    kept, report = decontaminate("d", [text(0, "1+1")], {"held": [text(0, "1+2")]})
    assert len(kept) == 1
    assert report.line() == "d: decontaminated 0 of 1 training rows (none equals an item of d.held)"


def test_evals_that_cover_every_training_row_are_an_error_naming_the_domain() -> None:
    with pytest.raises(DataError) as e:
        decontaminate("arith", [text(0, "1+1"), text(1, " 1+1 ")], {"held": [text(0, "1+1")]})
    assert "every one of the 2 training rows of domain `arith`" in str(e.value)
    assert "its evals cover its whole training set" in str(e.value) and "help:" in str(e.value)


def plan_with(decon: bool, eval_offset: int = 6, **domain_kw):
    """A tiny plan whose domain `add` trains on rows 0..7 and is evaluated on 3 rows from ``eval_offset``."""
    add = domain("add", **domain_kw)
    held = EvalSpec(name="held", data=DataSource(kind="inline", rows=rows(3, eval_offset)), max_tokens=3)
    add = add.model_copy(update={"decontaminate": decon, "evals": [held]})
    return tiny_plan(domains={"add": add}, stages=[sft_stage("s1", "base", steps=1)])


def test_decontamination_is_per_domain_and_only_where_it_is_on() -> None:
    plan = plan_with(True)
    other = plan.domains["add"].model_copy(update={"name": "sub", "decontaminate": False})
    plan = plan.model_copy(update={"domains": {**plan.domains, "sub": other}})
    data = {"add": [text(i, f"{i}+1=") for i in range(8)], "sub": [text(i, f"{i}+1=") for i in range(8)]}
    out, reports = decontaminate_domains(plan, data, load_eval_sets(plan))
    assert [s.prompt for s in out["add"]] == [f"{i}+1=" for i in range(6)] and out["sub"] == data["sub"]
    assert [r.domain for r in reports] == ["add"]


def test_the_training_hash_follows_the_setting_and_then_the_evals_data() -> None:
    def h(plan) -> str:
        return hash_plan(plan).stages[0].hash

    assert h(plan_with(False)) != h(plan_with(True))
    # off, the evals do not decide the training rows; on, their data does
    assert h(plan_with(False)) == h(plan_with(False, eval_offset=20))
    assert h(plan_with(True)) != h(plan_with(True, eval_offset=20))
    plan = plan_with(True)
    add = plan.domains["add"]
    # an eval's sampling setting, not its data: the training rows are the same
    longer = add.model_copy(update={"evals": [add.evals[0].model_copy(update={"max_tokens": 9})]})
    assert h(plan.model_copy(update={"domains": {"add": longer}})) == h(plan)


def test_training_rows_prints_and_records_what_was_dropped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plan = plan_with(True)
    rd = RunDir(tmp_path)
    data = training_rows(plan, plan.stages[0], rd, load_eval_sets(plan))
    assert len(data["add"]) == 6
    line = "[s1] add: decontaminated 2 of 8 training rows (equal to an item of add.held)"
    captured = capsys.readouterr()
    assert line in captured.out and line in captured.err  # stderr is the stage log
    assert rd.stage_state("s1")["decontaminated"] == {"add": {"rows": 8, "dropped": 2, "evals": ["add.held"]}}


def test_local_evals_covering_local_training_rows_fail_before_the_run() -> None:
    check_local_data(plan_with(True, eval_offset=0))  # 3 of 8 rows dropped: fine
    with pytest.raises(DataError, match="domain `add`"):
        check_local_data(plan_with(True, eval_offset=0, train=DataSource(kind="inline", rows=rows(3))))


@pytest.mark.slow
def test_a_run_drops_reports_and_records_the_rows(tmp_path: Path) -> None:
    # every training row is an eval item: refused before the base model is evaluated
    covered = plan_with(True, eval_offset=0, train=DataSource(kind="inline", rows=rows(3)))
    rd = RunDir(tmp_path / "run")
    out = console()
    assert run(write_build(tmp_path, covered), rd.root, console=out) == 1
    assert "its evals cover its whole training set" in out.file.getvalue() and not rd.evals_jsonl.exists()

    text_out = run_ok(write_build(tmp_path, plan_with(True)), rd)
    assert "[s1] add: decontaminated 2 of 8 training rows (equal to an item of add.held)" in text_out
    assert "add: decontaminated 2 of 8" in rd.log("s1").read_text()
    assert json.loads(rd.state_json.read_text())["stages"]["s1"]["decontaminated"]["add"]["dropped"] == 2
    assert "s1: add: decontaminated 2 of 8 training rows against add.held" in text_report(load_run(rd.root))
