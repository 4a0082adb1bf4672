"""Findings of a new-user test of `cascadec run`/`status`/`report` (issue text in the lead's notes): a run
directory damaged or changed by hand gives a clear message or is repaired by the next run, and output to
a closed pipe does not stop training.

A finished one-stage run is made once per module with the toy trainer (``fixtures/cascadec_toy_plugin.py``)
and copied for each test that changes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cascadec_runtime_plans import console, run_ok, sft_stage, tiny_plan, write_build

from cascadec.contract.plan import ModelRef
from runtime.launch import repo_root
from runtime.models import ModelLoadError, load_model
from runtime.orchestrator import plan_actions, run
from runtime.scores import STALE_NOTE
from runtime.status import status
from runtime.report import ReportError, load_run, report
from runtime.state import RunDir, read_jsonl

pytestmark = pytest.mark.usefixtures("toy_env")


def one_stage_plan():
    return tiny_plan(stages=[sft_stage("s1", "base", steps=2)])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunDir]:
    """(build directory, run directory) of a finished one-stage run."""
    root = tmp_path_factory.mktemp("finished")
    build = write_build(root, one_stage_plan())
    rd = RunDir(root / "run")
    with pytest.MonkeyPatch.context() as mp:  # toy_env is function-scoped
        fixtures = Path(__file__).parent / "fixtures"
        mp.setenv("PYTHONPATH", os.pathsep.join([str(fixtures), os.environ.get("PYTHONPATH", "")]))
        mp.setenv("CASCADEC_PLUGINS", "cascadec_toy_plugin")
        mp.setenv("OMP_NUM_THREADS", "1")
        run_ok(build, rd)
    return build, rd


@pytest.fixture
def copy(finished: tuple[Path, RunDir], tmp_path: Path) -> tuple[Path, RunDir]:
    build, rd = finished
    shutil.copytree(rd.root, tmp_path / "run")
    return build, RunDir(tmp_path / "run")


def status_text(rd: RunDir, expected_rc: int = 0) -> str:
    out = console()
    assert status(rd.root, console=out) == expected_rc, out.file.getvalue()
    return out.file.getvalue()


def test_deleted_eval_log_is_measured_again_by_the_next_run(copy: tuple[Path, RunDir]) -> None:
    build, rd = copy
    rd.evals_jsonl.unlink()
    assert "done (eval scores missing: `cascadec run` re-evaluates it)" in status_text(rd)
    assert [a for _, a in plan_actions(one_stage_plan(), rd)] == ["reeval"]
    text = run_ok(build, rd)
    assert text.startswith("code sandbox: ")  # the level code rewards would run at, said up front
    assert "base: evaluating the base model" in text
    assert "s1: done, training unchanged; eval scores missing from evals.jsonl: re-evaluating" in text
    assert "no evals in the spec" not in text and "eval scores after each stage" in text
    assert sorted(r["stage"] for r in read_jsonl(rd.evals_jsonl)) == ["base", "s1"]
    assert [a for _, a in plan_actions(one_stage_plan(), rd)] == ["skip"]


def test_missing_final_checkpoint_is_named_not_called_a_plan_change(copy: tuple[Path, RunDir]) -> None:
    _, rd = copy
    shutil.rmtree(rd.final("s1"))
    text = status_text(rd)
    assert "final checkpoint missing" in text and "plan changed" not in text


def test_stage_without_a_checkpoint_is_not_said_to_resume(copy: tuple[Path, RunDir]) -> None:
    build, rd = copy
    shutil.rmtree(rd.final("s1"))
    rd.update_stage("s1", status="failed", step=0)  # failed before its first checkpoint
    out = console()
    assert run(build, rd.root, dry_run=True, console=out) == 0
    assert "run (no checkpoint yet)" in out.file.getvalue() and "resume at step 0" not in out.file.getvalue()
    text = run_ok(build, rd)
    assert "s1: sft from `base`, 2 steps" in text and "resuming" not in text


def test_stale_scores_are_marked_in_status_and_report(copy: tuple[Path, RunDir]) -> None:
    _, rd = copy
    assert "*" not in status_text(rd)
    rd.update_stage("s1", eval_hash="measured-with-older-evals")  # a re-evaluation interrupted before s1
    text = status_text(rd)
    assert "s1 *" in text and STALE_NOTE in text and "base *" not in text
    summary = load_run(rd.root)
    assert summary.stale == {"s1"}
    report(rd.root, console=(out := console()))
    assert "s1 *" in out.file.getvalue() and STALE_NOTE in out.file.getvalue()


@pytest.mark.parametrize(("entry", "problem"), [
    ({"status": "done", "step": "abc"}, '`step` is "abc", not a whole number'),
    ({"status": "done", "step": -7}, "`step` is -7, a negative step count"),
    ({"status": "finished"}, '`status` is "finished", not one of'),
    ([1, 2], "[1, 2] is not an object"),
])
def test_wrong_types_in_state_file_are_the_damaged_message(tmp_path: Path, entry, problem: str) -> None:
    build = write_build(tmp_path, one_stage_plan())
    rd = RunDir(tmp_path / "run")
    rd.root.mkdir()
    shutil.copy(build / "plan.json", rd.plan_json)
    rd.state_json.write_text(json.dumps({"stages": {"s1": entry}}))
    for text in (status_text(rd, 2), _run_text(build, rd, 2)):
        assert f"`{rd.state_json}` is damaged (stage `s1`: {problem}" in text and "help: restore it" in text
        assert "internal error" not in text and "Traceback" not in text
    with pytest.raises(ReportError, match="is damaged"):
        report(rd.root, console=console())


def _run_text(build: Path, rd: RunDir, expected_rc: int) -> str:
    out = console()
    assert run(build, rd.root, console=out) == expected_rc
    return out.file.getvalue()


def test_bad_eval_lines_are_skipped_with_one_warning(copy: tuple[Path, RunDir]) -> None:
    _, rd = copy
    good = read_jsonl(rd.evals_jsonl)
    bad = [json.dumps({**good[0], "score": "high"}), "[1, 2]", "not json", json.dumps({**good[0], "step": "x"}),
           json.dumps({**good[0], "item_scores": "1,0"}), json.dumps({**good[0], "item_scores": [1.0, "0"]})]
    nan = json.dumps({**good[-1], "score": float("nan")})
    rd.evals_jsonl.write_text("\n".join([*map(json.dumps, good), *bad, nan]) + "\n")
    text = status_text(rd)
    assert f"warning: skipped 6 damaged lines of `{rd.evals_jsonl}`" in text and "nan" in text
    out = console()
    report(rd.root, console=out)
    assert "warning: skipped 6 damaged lines" in out.file.getvalue()
    assert load_run(rd.root).skipped == 6


def test_checkpoint_files_get_the_usual_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runtime.state
    from runtime.models import save_checkpoint

    from cascadec.contract import fsutil

    # the usual umask (0o022), whatever this process has
    monkeypatch.setattr(fsutil, "NEW_FILE_MODE", 0o644)
    monkeypatch.setattr(fsutil, "NEW_DIR_MODE", 0o755)
    model, tokenizer = load_model(ModelRef(kind="tiny", name="llama", config={"hidden_size": 16,
                                                                             "num_hidden_layers": 1}))
    save_checkpoint(model, tokenizer, tmp_path / "final")
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "final").iterdir()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes


def test_hub_hint_gives_the_local_directory_syntax_of_the_language(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRef(kind="hub", name="someone/not-cached-model"))
    assert 'model("./DIR")' in str(err.value) and "path =" not in str(err.value)
    docs = (repo_root() / "docs" / "language.md").read_text()
    assert '`model("./dir")`' in docs  # the form the hint names is the documented one


def test_a_reader_that_goes_away_does_not_stop_training(tmp_path: Path) -> None:
    build = write_build(tmp_path, tiny_plan(stages=[sft_stage("s1", "base", steps=6)]))
    rd = RunDir(tmp_path / "run")
    code = "import sys; from runtime.orchestrator import run; sys.exit(run(sys.argv[1], sys.argv[2]))"
    proc = subprocess.Popen([sys.executable, "-c", code, str(build), str(rd.root)], cwd=repo_root(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()  # `cmd | head -1`: read one line, then go away
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode() + "\n".join(p.read_text() for p in rd.root.glob("stages/*/stage.log"))
    assert rd.stage_state("s1")["status"] == "done" and b"BrokenPipeError" not in err
