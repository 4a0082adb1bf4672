"""Helpers for CLI tests: hand-built plans and diagnostics, a CLI runner, ruff-style snapshot files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from typer.testing import CliRunner, Result

from cascadec import cli
from cascadec.diagnostics import Diagnostic, Label, Span
from cascadec.contract.plan import (
    Condition,
    DataSource,
    DistillParams,
    Domain,
    GRPOParams,
    ModelRef,
    Optim,
    Plan,
    RewardSpec,
    Schedule,
    SFTParams,
    Stage,
    TeacherRef,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"

BAD_SOURCE = 'cascade "demo" {\n  stage rl = grpo(trian) on math { steps = 0 }\n}\n'


def demo_plan(name: str = "demo") -> Plan:
    """SFT -> (RLHF side branch) -> GRPO on a mixture -> MOPD with routed and `best` teachers."""
    optim = Optim(lr=Schedule(peak=1e-5))

    def domain(n: str) -> Domain:
        return Domain(name=n, train=DataSource(kind="jsonl", path=f"data/{n}.jsonl"), reward=RewardSpec(kind="exact"))

    stages = [
        Stage(name="sft", kind="sft", parent="base", domains={"math": 0.5, "chat": 0.5},
              params=SFTParams(optim=optim, steps=100, batch_size=64), hash="1" * 64),
        Stage(name="rlhf_side", kind="grpo", parent="sft", domains={"chat": 1.0}, branch=True,
              params=GRPOParams(optim=optim, steps=25, prompts_per_step=32, rollouts_per_prompt=8), hash="2" * 64),
        Stage(name="multi_rl", kind="grpo", parent="sft", domains={"math": 0.55, "chat": 0.45},
              params=GRPOParams(optim=optim, steps=70), hash="3" * 64),
        Stage(name="mopd", kind="distill", parent="multi_rl", domains={"math": 0.5, "chat": 0.5},
              params=DistillParams(optim=optim, steps=52),
              teachers={"chat": TeacherRef(kind="stage", stage="rlhf_side"),
                        "math": TeacherRef(kind="best", candidates=["sft", "multi_rl"], domain="math", eval="gsm")},
              until=[Condition(kind="threshold", domain="math", eval="gsm", op=">=", value=1.0, relative_to="math"),
                     Condition(kind="steps", op=">=", value=40)],
              hash="4" * 64),
    ]  # fmt: skip
    return Plan(
        name=name,
        base=ModelRef(kind="packaged", name="smollm2-135m-instruct"),
        domains={"math": domain("math"), "chat": domain("chat")},
        stages=stages,
        source="demo.cascade",
    )


def unknown_stage(path: str) -> Diagnostic:
    return Diagnostic(
        "CAS300", "unknown-name", "error", "unknown stage `trian`",
        (Label(Span(path, 2, 19, 2, 24), "not defined in this cascade"),), help="did you mean `sft`?",
    )  # fmt: skip


def zero_steps_warning(path: str) -> Diagnostic:
    return Diagnostic(
        "CAS404", "until-without-evals", "warning", "stop rule is never evaluated",
        (Label(Span(path, 2, 38, 2, 43), "`eval_every` is 0"),), help="set `eval_every`",
    )  # fmt: skip


def invoke(args: Sequence[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.app, list(args), env={"COLUMNS": "120", **(env or {})}, catch_exceptions=False)


def check_snapshot(name: str, args: Sequence[str], result: Result, update: bool) -> None:
    """Compare (or with ``--update-goldens`` rewrite) tests/cli/snapshots/<name>.snap."""
    text = (
        f"$ cascadec {' '.join(args)}\n"
        f"exit: {result.exit_code}\n"
        f"----- stdout -----\n{result.stdout}"
        f"----- stderr -----\n{result.stderr}"
    )
    path = SNAPSHOTS / f"{name}.snap"
    if update:
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"missing snapshot {path}; run pytest with --update-goldens and review it"
    assert text == path.read_text(encoding="utf-8")
