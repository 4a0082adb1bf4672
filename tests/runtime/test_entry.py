"""Pieces of the stage process: reward guard, metric reduction, accelerator, launch command, imports."""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path

import pytest

from cascadec.contract.plan import Resources
from runtime.data import Sample
from runtime.entry import GuardedReward, StageError, make_accelerator, main
from runtime.launch import stage_command, stage_env
from runtime.loop import checkpoint_step, reduce_metrics
from runtime.rewards.base import RewardError

# The compiler/runtime contract package; never the parser, the model, the checks or the CLI.
CONTRACT = "cascadec.contract"
SAMPLES = [Sample(id="d/0", domain="d", prompt="p", answer="1")] * 2


def test_guarded_reward_turns_exceptions_into_reward_errors() -> None:
    def broken(samples, completions):
        raise KeyError("tests")

    with pytest.raises(RewardError) as err:
        GuardedReward("code", broken)(SAMPLES, ["a", "b"])
    assert "reward of domain `code` raised KeyError" in str(err.value) and "help:" in str(err.value)


def test_guarded_reward_checks_count_and_finiteness() -> None:
    assert GuardedReward("d", lambda s, c: [1, 0.5])(SAMPLES, ["a", "b"]) == [1.0, 0.5]
    with pytest.raises(RewardError, match="returned 1 values for 2"):
        GuardedReward("d", lambda s, c: [1.0])(SAMPLES, ["a", "b"])
    with pytest.raises(RewardError, match="not finite"):
        GuardedReward("d", lambda s, c: [1.0, math.nan])(SAMPLES, ["a", "b"])


def test_reduce_metrics_sums_throughput_and_averages_the_rest() -> None:
    out = reduce_metrics([{"loss": 1.0, "tokens_per_s": 10.0, "flag": True, "name": "x"},
                          {"loss": 3.0, "tokens_per_s": 30.0}])
    assert out == {"loss": 2.0, "tokens_per_s": 40.0}


def test_cpu_accelerator_is_single_process() -> None:
    acc = make_accelerator(Resources(device="cpu", precision="fp32"))
    assert acc.num_processes == 1 and acc.mixed_precision == "no" and acc.device.type == "cpu"


def test_cuda_request_without_cuda_is_a_user_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(StageError, match="no CUDA device"):
        make_accelerator(Resources(device="cuda"))


def test_stage_command_direct_for_one_process_and_torchrun_for_more(tmp_path: Path) -> None:
    one = stage_command(tmp_path / "plan.json", "s1", tmp_path, nproc=1)
    assert one[:3] == [sys.executable, "-m", "runtime.entry"]
    assert one[-4:] == ["--stage", "s1", "--run-dir", str(tmp_path)]
    two = stage_command(tmp_path / "plan.json", "s1", tmp_path, nproc=2)
    assert two[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node"] and two[5] == "2"
    env = stage_env(2, {"X": "1"})
    assert env["X"] == "1" and str(Path(__file__).resolve().parents[2]) in env["PYTHONPATH"]


def test_checkpoint_step_reads_meta_and_recovers_a_half_swapped_dir(tmp_path: Path) -> None:
    assert checkpoint_step(tmp_path / "ckpt") == 0
    old = tmp_path / "ckpt.old-123"
    old.mkdir()
    (old / "meta.json").write_text(json.dumps({"step": 7}))
    assert checkpoint_step(tmp_path / "ckpt") == 7 and (tmp_path / "ckpt").is_dir()


def test_entry_reports_unknown_stage_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cascadec_runtime_plans import tiny_plan

    plan = tmp_path / "plan.json"
    plan.write_text(tiny_plan().to_json())
    assert main(["--plan", str(plan), "--stage", "nope", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "the plan has no stage `nope`" in err and "`s1`" in err and "Traceback" not in err
    assert "no stage `nope`" in (tmp_path / "run" / "stages" / "nope" / "error.txt").read_text()


def test_every_runtime_error_written_for_the_user_is_a_user_error() -> None:
    import importlib

    from cascadec.contract.errors import UserError

    root = Path(__file__).resolve().parents[2]
    found = []
    for path in sorted((root / "runtime").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
                found.append(getattr(importlib.import_module(module), node.name))
    assert len(found) >= 14
    assert [e.__name__ for e in found if not issubclass(e, UserError)] == []


def test_runtime_imports_nothing_from_cascadec_but_the_contract() -> None:
    root = Path(__file__).resolve().parents[2] / "runtime"
    bad = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            bad += [f"{path.relative_to(root.parent)}: {n}" for n in names
                    if (n == "cascadec" or n.startswith("cascadec."))
                    and not (n == CONTRACT or n.startswith(CONTRACT + "."))]
            if isinstance(node, ast.ImportFrom) and node.module == "cascadec":
                bad += [f"{path.relative_to(root.parent)}: cascadec.{a.name}" for a in node.names
                        if a.name != "contract"]
    assert bad == []


def test_the_contract_imports_nothing_else_from_cascadec() -> None:
    root = Path(__file__).resolve().parents[2] / "cascadec" / "contract"
    bad = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("cascadec"):
                bad += [f"{path.name}: {node.module}"] if not node.module.startswith(CONTRACT) else []
    assert bad == []


def test_guarded_reward_lets_an_unrouted_row_through_only_for_a_routing_reward() -> None:
    from cascadec.contract.plan import DataSource, Domain, ModelRef, Plan, RewardSpec
    from runtime.entry import build_rewards

    routed = RewardSpec(kind="weighted", parts=[RewardSpec(kind="route", args={"by": "id", "keys": ["d/0"]},
                                                           parts=[RewardSpec(kind="exact")], weights=[1.0])],
                        weights=[1.0])
    doms = {n: Domain(name=n, train=DataSource(kind="inline", rows=[{"prompt": "x"}]), reward=r)
            for n, r in (("routed", routed), ("plain", RewardSpec(kind="exact")))}
    rewards = build_rewards(Plan(name="p", base=ModelRef(kind="tiny", name="llama"), domains=doms, stages=[]))
    with pytest.warns(RuntimeWarning, match="no route"):
        got = rewards["routed"]([SAMPLES[0], Sample(id="d/1", domain="d", prompt="p")], ["1", "b"])
    assert got[0] == 1.0 and math.isnan(got[1])  # d/0 is routed, d/1 is not
    assert rewards["routed"].routed and not rewards["plain"].routed  # a plain reward's NaN is still an error


def test_a_domain_without_a_reward_compiles_and_builds_no_reward() -> None:
    from cascadec.compiler import compile_source
    from runtime.entry import build_rewards
    from runtime.rewards.contracts import check_rewards

    result = compile_source('''cascade "c" {
  base = model(tiny(llama))
  domain k { train = inline([{prompt = "1+1", answer = "2"}]) }
  stage s = sft(base) on k { steps = 1  lr = 1e-5 }
  stage t = distill(s) on k { steps = 1  lr = 1e-6  teachers { default = base } }
}''')
    assert result.diagnostics == [] and result.plan.domains["k"].reward is None
    assert build_rewards(result.plan) == {} and check_rewards(result.plan) == []
