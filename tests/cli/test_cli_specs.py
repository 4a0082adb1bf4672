"""The CLI end to end on real specs (the real compiler): snapshots, determinism, shipped specs, security."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import check_snapshot, invoke

from cascadec.compiler import compile_file

ROOT = Path(__file__).parents[2]
SPECS = Path(__file__).parent / "specs"
SHIPPED = sorted((ROOT / "specs").glob("*.cascade")) + sorted((ROOT / "examples").glob("*.cascade"))
MINI = "tests/cli/specs/mini.cascade"
BAD = "tests/cli/specs/bad.cascade"


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # Diagnostics print the path as given; run from the root so snapshots hold repo-relative paths.
    monkeypatch.chdir(ROOT)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["full", "concise", "json", "github", "sarif"])
def test_lint_real_diagnostics_snapshots(fmt: str, update_goldens: bool) -> None:
    args = ["lint", "--format", fmt, MINI, BAD]
    result = invoke(args)
    assert result.exit_code == 1
    check_snapshot(f"real_lint_{fmt}", args, result, update_goldens)


def test_lint_json_is_valid_and_points_into_the_file() -> None:
    items = json.loads(invoke(["lint", "--format", "json", BAD]).stdout)
    assert {i["code"] for i in items} >= {"CAS300", "CAS301"}
    lines = (ROOT / BAD).read_text().splitlines()
    for item in items:
        row, col = item["location"]["row"], item["location"]["column"]
        end = item["end_location"]
        assert item["filename"] == BAD
        assert row == end["row"] and col < end["column"] <= len(lines[row - 1]) + 1


def test_lint_clean_spec_exits_0() -> None:
    result = invoke(["lint", MINI])
    assert (result.exit_code, result.stdout) == (0, "all checks passed (1 file)\n")


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.name)
def test_shipped_specs_compile_deterministically_and_show(spec: Path, tmp_path: Path) -> None:
    rel = str(spec.relative_to(ROOT))
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second, first):
        result = invoke(["compile", rel, "-o", str(out)])
        assert result.exit_code == 0, result.stderr
    assert tree(first) == tree(second)
    built = Path(result.stdout.strip())
    assert (built / "plan.json").is_file()
    plan = json.loads((built / "plan.json").read_text())
    stage_dirs = {p.name for p in (built / "stages").iterdir()}
    assert stage_dirs == {s["name"] for s in plan["stages"]}
    table = invoke(["plan", rel])
    assert table.exit_code == 0
    for stage in plan["stages"]:
        assert stage["name"] in table.stdout and stage["hash"][:8] in table.stdout
    for fmt in ("mermaid", "dot"):
        assert invoke(["graph", "--format", fmt, rel]).exit_code == 0


def test_plan_and_graph_snapshots_of_mini(update_goldens: bool) -> None:
    for name, args in (
        ("real_plan_mini", ["plan", MINI]),
        ("real_graph_mini_mermaid", ["graph", MINI]),
        ("real_graph_mini_dot", ["graph", "--format", "dot", MINI]),
    ):
        result = invoke(args)
        assert result.exit_code == 0, result.stderr
        check_snapshot(name, args, result, update_goldens)


EVIL = "$(touch PWNED)`touch PWNED`;touch PWNED;'\\\"\\n|&"  # as written inside a .cascade string


def _evil_spec(directory: Path) -> Path:
    spec = directory / "evil.cascade"
    spec.write_text(
        'cascade "evil" {\n'
        f'  base = model("./model{EVIL}")\n'
        "  resources { gpus = 1  micro_batch = 1 }\n"
        "  domain d {\n"
        f'    train  = jsonl("data/{EVIL}.jsonl", prompt = "p")\n'
        '    reward = exact(answer = field("a"))\n'
        "  }\n"
        "  stage sft = sft(base) on d { steps = 2  batch_size = 2  lr = 1e-5 }\n"
        "}\n"
    )
    return spec


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_compiled_launch_script_never_executes_spec_values(tmp_path: Path) -> None:
    spec = _evil_spec(tmp_path)
    model_dir = tmp_path / ("model" + json.loads(f'"{EVIL}"'))  # the base model must exist (CAS325)
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    result = invoke(["compile", str(spec), "-o", str(tmp_path / "build")])
    assert result.exit_code == 0, result.stderr
    plan = json.loads((tmp_path / "build/evil/plan.json").read_text())
    model, data = plan["base"]["name"], plan["domains"]["d"]["train"]["path"]
    assert "$(touch PWNED)" in model and "\n" in data  # the compiler kept the hostile text as data
    work = tmp_path / "work"
    work.mkdir()
    for args, env in ((["--dry-run"], {}), ([], {"CASCADEC_DRY_RUN": "1"})):
        proc = subprocess.run(
            ["bash", str(tmp_path / "build/evil/stages/sft/launch.sh"), *args],
            cwd=work, env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert not list(tmp_path.rglob("PWNED")), "a value from the spec was executed"
        assert f"input: {model}\n" in proc.stdout and f"input: {data}\n" in proc.stdout
        assert proc.stdout.splitlines()[-1].startswith("torchrun --nnodes 1 --nproc-per-node 1 --standalone ")


def test_console_script_module_runs_in_a_fresh_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cascadec.cli", "lint", "--format", "concise", BAD],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1] == "found 2 errors"
    assert "Traceback" not in proc.stderr


def test_fmt_rewrites_a_spec_in_place_and_keeps_its_stages(tmp_path: Path) -> None:
    spec = tmp_path / "mini.cascade"
    original = (ROOT / MINI).read_text()
    assert "\n  stage side" in original
    spec.write_text(original.replace("\n  stage side", "\n          stage side"))  # indentation is canonical
    before = json.loads(invoke(["plan", "--format", "json", str(spec)]).stdout)
    assert invoke(["fmt", "--check", str(spec)]).exit_code == 1
    result = invoke(["fmt", str(spec)])
    assert (result.exit_code, result.stderr) == (0, f"reformatted {spec}\n")
    assert invoke(["fmt", "--check", str(spec)]).exit_code == 0
    after = json.loads(invoke(["plan", "--format", "json", str(spec)]).stdout)
    assert [(s["name"], s["hash"]) for s in after["stages"]] == [(s["name"], s["hash"]) for s in before["stages"]]


def test_fmt_reads_a_byte_order_mark_and_crlf_like_lint_does(tmp_path: Path) -> None:
    spec = tmp_path / "windows.cascade"
    original = (ROOT / MINI).read_text()
    spec.write_bytes(b"\xef\xbb\xbf" + original.replace("\n", "\r\n").encode())
    assert invoke(["lint", str(spec)]).exit_code == 0
    result = invoke(["fmt", str(spec)])
    assert (result.exit_code, result.stderr) == (0, f"reformatted {spec}\n")
    assert spec.read_text() == original  # canonical: no byte-order mark, LF line ends


def test_fmt_reports_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    spec = tmp_path / "latin1.cascade"
    spec.write_bytes(b'cascade "caf\xe9" {}\n')
    result = invoke(["fmt", str(spec)])
    assert result.exit_code == 1 and "error[CAS009]" in result.stderr
    assert "byte 0xe9 at line 1, column 13" in result.stderr and "Traceback" not in result.stderr


def test_run_dry_run_compiles_then_asks_the_orchestrator_and_writes_nothing(tmp_path: Path) -> None:
    result = invoke(["run", MINI, "--dry-run", "-o", str(tmp_path / "build"), "--run-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.stderr
    for stage in ("sft", "side", "rl", "mopd"):
        assert stage in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_check_rewards_points_at_a_broken_reward(tmp_path: Path) -> None:
    spec = tmp_path / "broken_reward.cascade"
    spec.write_text(
        'cascade "br" {\n'
        '  base = model(packaged("smollm2-135m-instruct"))\n'
        "  domain d {\n"
        '    train = inline([{prompt = "1+1", answer = "2"}])\n'
        '    reward = py("no_such_module_for_cascadec_tests:score")\n'
        "  }\n"
        "  stage sft = sft(base) on d { steps = 2 batch_size = 1 lr = 1e-5 }\n"
        "}\n"
    )
    assert invoke(["lint", str(spec)]).exit_code == 0  # the compiler alone cannot know
    (item,) = json.loads(invoke(["lint", "--check-rewards", "--format", "json", str(spec)]).stdout)
    assert item["name"] == "reward-contract" and item["severity"] == "error"
    assert "no_such_module_for_cascadec_tests" in item["message"]
    line = spec.read_text().splitlines()[4]
    start, end = line.index("py("), line.rindex(")") + 1  # the span covers `py("...")`
    assert (item["filename"], item["location"], item["end_location"]) == (
        str(spec),
        {"row": 5, "column": start + 1},
        {"row": 5, "column": end + 1},
    )
    assert item["help"]


def test_lint_builds_gym_generators_and_reports_every_finding_at_its_place(tmp_path: Path) -> None:
    spec = tmp_path / "gym.cascade"
    spec.write_text('cascade "g" {\n  base = model(tiny(llama))\n  domain a {\n'
                    '    train = gym("basic_arithmetic", size = 20, min_terms = 3, max_terms = 1)\n    reward = gym()\n'
                    '  }\n  stage s = sft(base) on [a] { steps = 2  lr = 3e5 }\n}\n', encoding="utf-8")
    result = invoke(["lint", "--format", "concise", str(spec)])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:2] == [
        f"{spec}:4:48: error[CAS327] reasoning-gym cannot build `basic_arithmetic` with these arguments: "
        "max_terms must be >= min_terms",
        f"{spec}:7:48: warning[CAS415] stage `s`'s learning rate is 300000, above 0.01"]
    assert "CAS327" not in str(compile_file(spec).diagnostics)  # an editor's compile does not build


def test_check_rewards_says_when_it_falls_back_to_synthetic_rows(tmp_path: Path) -> None:
    spec = tmp_path / "elsewhere.cascade"
    spec.write_text('cascade "e" {\n  base = model(tiny(llama))\n  domain d {\n'
                    '    train = jsonl("/cluster/only/d.jsonl")\n    reward = exact()\n  }\n'
                    '  stage s = sft(base) on d { steps = 2  batch_size = 2  lr = 1e-5 }\n}\n', encoding="utf-8")
    assert invoke(["lint", str(spec)]).exit_code == 0  # data compiled away from its files is a warning (CAS320)
    result = invoke(["lint", "--check-rewards", "--format", "json", str(spec)])
    missing, item = json.loads(result.stdout)
    assert missing["code"] == "CAS320"
    assert (item["code"], item["severity"], item["location"]) == ("CAS503", "warning", {"row": 5, "column": 14})
    assert "checked only on synthetic samples" in item["message"] and "/cluster/only/d.jsonl" in item["message"]
    assert "real rows" in item["help"]


def test_lint_builds_local_data_past_its_first_row(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"prompt": "1+1", "answer": "2"}\n{"prompt": "2+2"}\n', encoding="utf-8")
    spec = tmp_path / "rows.cascade"
    spec.write_text('cascade "r" {\n  base = model(tiny(llama))\n  domain d {\n'
                    '    train = jsonl("d.jsonl")\n    reward = exact()\n  }\n'
                    '  stage s = sft(base) on d { steps = 2  batch_size = 2  lr = 1e-5 }\n}\n', encoding="utf-8")
    result = invoke(["lint", "--format", "concise", str(spec)])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (
        f"{spec}:4:19: error[CAS328] `{tmp_path / 'd.jsonl'}:2` has no `completion` or `answer` for SFT stage `s` "
        "to train on: the run stops when it loads this row")
