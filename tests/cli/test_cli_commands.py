"""The CLI's own behaviour (exit codes, streams, formats, delegation) with a stub compiler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import check_snapshot, demo_plan, invoke

from cascadec.cli import commands, views
from cascadec.codes import CODES
from cascadec.compiler import CompileResult
from cascadec.diagnostics import Diagnostic

pytestmark = pytest.mark.usefixtures("stub_compiler", "specs")


# ---------------------------------------------------------------- lint


def test_lint_clean_exits_0() -> None:
    result = invoke(["lint", "clean.cascade"])
    assert result.exit_code == 0
    assert result.stdout == "all checks passed (1 file)\n"


def test_lint_warning_exits_0_unless_warnings_are_errors() -> None:
    assert invoke(["lint", "warn.cascade"]).exit_code == 0
    assert invoke(["lint", "-W", "warn.cascade"]).exit_code == 1
    assert invoke(["lint", "--warnings-as-errors", "clean.cascade"]).exit_code == 0


def test_lint_error_exits_1_and_sorts_many_files() -> None:
    result = invoke(["lint", "--format", "concise", "warn.cascade", "bad.cascade", "clean.cascade"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "bad.cascade:2:19: error[CAS300] unknown stage `trian`",
        "warn.cascade:2:38: warning[CAS404] stop rule is never evaluated",
        "found 1 error and 1 warning",
    ]


def test_lint_missing_file_exits_2_with_a_message() -> None:
    result = invoke(["lint", "clean.cascade", "nope.cascade"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: `nope.cascade` does not exist\nhelp: ")


@pytest.mark.parametrize("fmt", ["json", "sarif", "github", "concise"])
def test_lint_missing_file_keeps_the_findings_of_the_others(fmt: str) -> None:
    result = invoke(["lint", "--format", fmt, "bad.cascade", "nope.cascade"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: `nope.cascade` does not exist\nhelp: ")
    assert "CAS300" in result.stdout and "nope.cascade" not in result.stdout
    if fmt in ("json", "sarif"):
        json.loads(result.stdout)


def test_lint_missing_file_with_a_clean_one_prints_an_empty_json_list() -> None:
    result = invoke(["lint", "--format", "json", "clean.cascade", "nope.cascade"])
    assert (result.exit_code, json.loads(result.stdout)) == (2, [])


def test_lint_directory_exits_2(specs: Path) -> None:
    (specs / "sub").mkdir()
    result = invoke(["lint", "sub"])
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_lint_unknown_format_is_a_usage_error() -> None:
    assert invoke(["lint", "--format", "xml", "clean.cascade"]).exit_code == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["graph", "--format", "svg"], "`svg` is unknown; use `mermaid` or `dot`"),
        (["graph", "--format", "Dot"], "`Dot` is unknown; use `mermaid` or `dot`; did you mean `dot`?"),
        (["plan", "--format", "yaml"], "`yaml` is unknown; use `table` or `json`"),
        (["lint", "--format", "xml"], "`xml` is unknown; use `full`, `concise`, `json`, `github` or `sarif`"),
        (["compile", "--format", "xml"], "`xml` is unknown; use `full`, `concise`, `json`, `github` or `sarif`"),
    ],
)
def test_unknown_format_message_is_plain(args: list[str], expected: str) -> None:
    result = invoke([*args, "clean.cascade"])
    assert result.exit_code == 2
    assert f"Invalid value for '--format': {expected}" in result.stderr
    assert "Value error" not in result.stderr


def test_known_formats_still_parse() -> None:
    assert invoke(["graph", "--format", "dot", "clean.cascade"]).stdout.startswith("digraph")
    assert json.loads(invoke(["plan", "--format", "json", "clean.cascade"]).stdout)["name"] == "clean"


@pytest.mark.parametrize("fmt", ["full", "concise", "json", "github", "sarif"])
def test_lint_format_snapshots(fmt: str, update_goldens: bool) -> None:
    args = ["lint", "--format", fmt, "bad.cascade", "warn.cascade"]
    result = invoke(args)
    assert result.exit_code == 1
    check_snapshot(f"lint_{fmt}", args, result, update_goldens)


def test_lint_json_urls_point_at_documented_anchors() -> None:
    items = json.loads(invoke(["lint", "--format", "json", "bad.cascade", "warn.cascade"]).stdout)
    docs = (Path(__file__).parents[2] / "docs" / "diagnostics.md").read_text()
    for item in items:
        anchor = item["url"].split("#", 1)[1]
        assert item["url"].startswith("docs/diagnostics.md#")
        assert f'<a id="{anchor}"></a>' in docs


def test_lint_empty_machine_formats() -> None:
    assert json.loads(invoke(["lint", "--format", "json", "clean.cascade"]).stdout) == []
    sarif = json.loads(invoke(["lint", "--format", "sarif", "clean.cascade"]).stdout)
    assert sarif["runs"][0]["results"] == []
    assert invoke(["lint", "--format", "github", "clean.cascade"]).stdout == ""


def test_check_rewards_reports_a_missing_runtime_or_adds_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_runtime(name: str, *a: object, **k: object) -> object:
        if name == "runtime" and a and a[2] and "api" in a[2]:  # `from runtime import api`
            err = ModuleNotFoundError("No module named 'runtime'")
            err.name = "runtime"
            raise err
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_runtime)
    result = invoke(["lint", "--check-rewards", "clean.cascade"])
    monkeypatch.setattr(builtins, "__import__", real_import)
    assert result.exit_code == 2
    assert "--check-rewards needs the runtime (`runtime.api`)" in result.stderr

    from cascadec.contract.plan import Origin
    from runtime.rewards.contracts import Problem

    class Api:
        @staticmethod
        def sandbox_level() -> str:
            return "code sandbox: namespaces"

        @staticmethod
        def check_rewards(plan: object) -> list[Problem]:
            origin = Origin(path="clean.cascade", line=2, column=3, end_line=2, end_column=8)
            return [Problem("math", "exact", "returned None, not a float", "return a float", origin)]

    monkeypatch.setattr(commands, "_api", lambda command: Api)
    result = invoke(["lint", "--check-rewards", "--format", "concise", "clean.cascade"])
    assert result.stderr.startswith("code sandbox: namespaces")
    assert result.exit_code == 1
    code = views.reward_contract_code()[0]
    assert result.stdout.splitlines()[0] == (
        f"clean.cascade:2:3: error[{code}] reward `exact` of domain `math` breaks its contract: "
        "returned None, not a float"
    )


# ---------------------------------------------------------------- compile


def test_compile_writes_build_dir_and_prints_its_path(specs: Path) -> None:
    result = invoke(["compile", "warn.cascade", "-o", "out"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "out/warn\n"
    assert "warning[CAS404]" in result.stderr
    assert (specs / "out/warn/plan.json").read_text() == demo_plan("warn").to_json()
    assert (specs / "out/warn/stages/mopd/launch.sh").is_file()


def test_compile_error_exits_1_and_writes_nothing(specs: Path) -> None:
    result = invoke(["compile", "bad.cascade", "-o", "out"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error[CAS300]: unknown stage `trian`\n --> bad.cascade:2:19\n")
    assert not (specs / "out").exists()


def test_compile_runs_the_build_checks_as_lint_and_run_do(stub_compiler, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    monkeypatch.setattr(commands, "compile_file", lambda path, *, build_data=False: asked.append(build_data)
                        or stub_compiler(path, build_data=build_data))
    assert invoke(["compile", "clean.cascade", "-o", "out"]).exit_code == 0
    assert asked == [True]


def test_compile_twice_is_byte_identical(specs: Path) -> None:
    def snapshot(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert invoke(["compile", "clean.cascade", "-o", "a"]).exit_code == 0
    assert invoke(["compile", "clean.cascade", "-o", "b"]).exit_code == 0
    first = snapshot(specs / "a")
    assert invoke(["compile", "clean.cascade", "-o", "a"]).exit_code == 0
    assert first == snapshot(specs / "b") == snapshot(specs / "a")


def test_compile_into_a_foreign_directory_exits_2(specs: Path) -> None:
    (specs / "out/clean").mkdir(parents=True)
    (specs / "out/clean/notes.txt").write_text("mine")
    result = invoke(["compile", "clean.cascade", "-o", "out"])
    assert result.exit_code == 2
    assert "not made by cascadec" in result.stderr


# ---------------------------------------------------------------- plan / graph


def test_plan_table_snapshot(update_goldens: bool) -> None:
    args = ["plan", "clean.cascade"]
    result = invoke(args)
    assert result.exit_code == 0
    for text in ("rlhf_side (branch)", "math=best(sft, multi_rl by math.gsm)", "teacher(math).gsm", "32 × 8 (256)"):
        assert text in result.stdout
    check_snapshot("plan_table", args, result, update_goldens)


def test_plan_json_round_trips() -> None:
    result = invoke(["plan", "--format", "json", "clean.cascade"])
    assert result.exit_code == 0
    assert result.stdout == demo_plan("clean").to_json()


def test_plan_of_a_bad_spec_exits_1() -> None:
    result = invoke(["plan", "bad.cascade"])
    assert result.exit_code == 1 and result.stdout == "" and "CAS300" in result.stderr


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_graph_snapshots(fmt: str, update_goldens: bool) -> None:
    args = ["graph", "--format", fmt, "clean.cascade"]
    result = invoke(args)
    assert result.exit_code == 0
    check_snapshot(f"graph_{fmt}", args, result, update_goldens)


# ---------------------------------------------------------------- explain


def test_explain_known_code_any_case() -> None:
    result = invoke(["explain", "cas301"])
    assert result.exit_code == 0
    entry = CODES["CAS301"]
    assert result.stdout.startswith(f"CAS301 ({entry.name}, {entry.severity}): {entry.summary}\n\n")
    assert entry.explanation in result.stdout
    assert result.stdout.endswith("see docs/diagnostics.md#cas301\n")


def test_explain_unknown_code_lists_known_codes() -> None:
    result = invoke(["explain", "CAS777"])
    assert result.exit_code == 2
    assert "unknown diagnostic code `CAS777`" in result.stderr
    assert all(code in result.stderr for code in CODES)


# ---------------------------------------------------------------- fmt


@pytest.fixture
def upper_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A formatter that upper-cases text, and refuses files containing `!` (a syntax error)."""

    class Fmt:
        @staticmethod
        def format_source(text: str, path: str) -> tuple[str | None, list[Diagnostic]]:
            if "!" in text:
                return None, [Diagnostic("CAS100", "syntax-error", "error", "unexpected `!`")]
            return text.upper(), []

    monkeypatch.setattr(commands, "format_source", Fmt.format_source)


@pytest.mark.usefixtures("upper_formatter")
def test_fmt_check_diff_and_write(specs: Path) -> None:
    (specs / "done.cascade").write_text("ALREADY\n")
    (specs / "todo.cascade").write_text("fix me\n")
    result = invoke(["fmt", "--check", "done.cascade", "todo.cascade"])
    assert (result.exit_code, result.stderr) == (1, "would reformat todo.cascade\n")
    assert "-fix me\n" in result.stdout and "todo.cascade (formatted)" in result.stdout  # --check shows the diff
    assert invoke(["fmt", "--check", "done.cascade"]).exit_code == 0
    result = invoke(["fmt", "--diff", "todo.cascade"])
    assert result.exit_code == 1
    assert "-fix me\n+FIX ME\n" in result.stdout
    assert (specs / "todo.cascade").read_text() == "fix me\n"
    result = invoke(["fmt", "todo.cascade", "done.cascade"])
    assert (result.exit_code, result.stderr) == (0, "reformatted todo.cascade\n")
    assert (specs / "todo.cascade").read_text() == "FIX ME\n"


@pytest.mark.usefixtures("upper_formatter")
def test_fmt_refuses_a_file_with_errors(specs: Path) -> None:
    (specs / "broken.cascade").write_text("oops!\n")
    result = invoke(["fmt", "broken.cascade"])
    assert result.exit_code == 1
    assert "error[CAS100]: unexpected `!`" in result.stderr
    assert (specs / "broken.cascade").read_text() == "oops!\n"


# ---------------------------------------------------------------- internal errors, version, runtime


def test_unexpected_exception_is_an_internal_error_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: object, **_: object) -> CompileResult:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(commands, "compile_file", boom)
    result = invoke(["lint", "clean.cascade"])
    assert result.exit_code == 2
    assert result.stderr.startswith("internal error: ZeroDivisionError: division by zero (please report")
    assert "Traceback" not in result.stderr + result.stdout


def test_version_and_help() -> None:
    assert invoke(["--version"]).stdout.startswith("cascadec ")
    result = invoke([])
    assert result.exit_code == 2 and "compile" in result.stdout + result.stderr


def test_run_status_report_delegate_to_the_runtime(monkeypatch: pytest.MonkeyPatch, specs: Path) -> None:
    calls: list[tuple[str, object]] = []

    class Orchestrator:
        @staticmethod
        def run(target: Path, run_dir: Path | None = None, *, nproc: int | None, dry_run: bool) -> int:
            calls.append(("run", (target, run_dir, nproc, dry_run)))
            return 1 if run_dir and run_dir.name == "failing" else 0

        @staticmethod
        def status(run_dir: Path) -> int:
            calls.append(("status", run_dir))
            return 0

    class Api(Orchestrator):
        from cascadec.contract.errors import UserError

        @classmethod
        def report(cls, run_dir: Path, out: Path | None) -> Path:
            raise cls.UserError("no evals yet")

    monkeypatch.setattr(commands, "_api", lambda command: Api)

    assert invoke(["run", "clean.cascade", "--run-dir", "runs/x", "--nproc", "2"]).exit_code == 0
    assert calls[-1] == ("run", (Path("build/clean"), Path("runs/x"), 2, False))
    assert (specs / "build/clean/plan.json").is_file()
    assert invoke(["run", "build/clean", "--dry-run"]).exit_code == 0
    assert calls[-1] == ("run", (Path("build/clean"), None, None, True))
    assert invoke(["run", "build/clean", "--run-dir", "failing"]).exit_code == 3
    assert invoke(["run", "bad.cascade"]).exit_code == 1
    assert invoke(["run", "missing"]).exit_code == 2
    (specs / "runs/x").mkdir(parents=True, exist_ok=True)
    assert invoke(["status", "runs/x"]).exit_code == 0
    assert calls[-1] == ("status", Path("runs/x"))
    result = invoke(["report", "runs/x"])
    assert (result.exit_code, result.stderr) == (2, "error: no evals yet\n")


def test_status_and_report_find_the_run_of_a_spec_or_the_only_run(monkeypatch: pytest.MonkeyPatch,
                                                                    specs: Path) -> None:
    seen: list[Path] = []

    class Api:
        @staticmethod
        def status(run_dir: Path) -> int:
            seen.append(run_dir)
            return 0

        @staticmethod
        def report(run_dir: Path, out: Path | None) -> Path:
            seen.append(run_dir)
            return run_dir / "report.html"

    monkeypatch.setattr(commands, "_api", lambda command: Api)
    assert "no run under `runs/`" in invoke(["status"]).stderr
    before = invoke(["report", "clean.cascade"])  # a spec that never ran: say so, and how to run it
    assert before.exit_code == 2 and "`clean.cascade` has not run here: no run directory `runs/clean`" in before.stderr
    assert "help: start it with `cascadec run clean.cascade`" in before.stderr and not seen
    (specs / "runs/clean").mkdir(parents=True)
    (specs / "runs/clean/plan.json").write_text("{}")
    assert invoke(["status"]).exit_code == 0 and invoke(["report", "clean.cascade"]).exit_code == 0
    assert seen == [Path("runs/clean"), Path("runs/clean")]
    (specs / "runs/other").mkdir()
    (specs / "runs/other/plan.json").write_text("{}")
    result = invoke(["status"])
    assert result.exit_code == 2 and "2 runs under `runs/`: `runs/clean`, `runs/other`" in result.stderr


def test_dry_run_of_a_spec_writes_nothing(monkeypatch: pytest.MonkeyPatch, specs: Path) -> None:
    seen: list[Path] = []

    class Orchestrator:
        @staticmethod
        def run(target: Path, run_dir: Path | None = None, *, nproc: int | None, dry_run: bool) -> int:
            assert dry_run and (target / "plan.json").is_file()
            seen.append(target)
            return 0

    monkeypatch.setattr(commands, "_api", lambda command: Orchestrator)
    before = sorted(specs.rglob("*"))
    assert invoke(["run", "clean.cascade", "--dry-run"]).exit_code == 0
    assert invoke(["run", "clean.cascade", "--dry-run", "-o", "out"]).exit_code == 0
    assert sorted(specs.rglob("*")) == before
    assert len(seen) == 2 and not any(p.exists() for p in seen)
    assert all(specs not in p.parents for p in seen)
