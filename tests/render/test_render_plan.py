"""Back end: Plan -> build/<name>/ (plan.json, launch.sh, accelerate/DeepSpeed configs, sbatch)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from cascadec.contract.plan import (
    DataSource,
    Domain,
    EvalSpec,
    GRPOParams,
    ModelRef,
    Optim,
    Plan,
    Resources,
    RewardSpec,
    Schedule,
    SFTParams,
    Stage,
)
from cascadec.render import (
    _ENV,
    RenderError,
    accelerate_env,
    deepspeed_config,
    render_files,
    render_plan,
    stage_inputs,
)

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")

# A value that would run commands if a script ever interpolated it unquoted.
EVIL = "x$(touch PWNED)`touch PWNED`;touch PWNED;\"'\n$HOME ${IFS} \\ * ? ~ | & < > ! # end"
EVIL_NAME = "demo$(touch PWNED)`touch PWNED`;'\"&|"


def make_plan(
    *,
    name: str = "demo",
    model: str = "models/base",
    data: str = "data/math.jsonl",
    eval_data: str = "data/math-eval.jsonl",
    strategy: str = "ddp",
    nnodes: int = 1,
    nproc: int = 2,
    precision: str = "bf16",
    stages: tuple[str, ...] = ("sft", "rl"),
) -> Plan:
    optim = Optim(lr=Schedule(peak=1e-5), grad_clip=0.5)
    domain = Domain(
        name="math",
        train=DataSource(kind="jsonl", path=data),
        reward=RewardSpec(kind="math_verify"),
        evals=[
            EvalSpec(name="held", data=DataSource(kind="jsonl", path=eval_data)),
            EvalSpec(name="gsm", data=DataSource(kind="gym", name="gsm_symbolic", size=8)),
        ],
    )
    res = Resources(nnodes=nnodes, nproc_per_node=nproc, strategy=strategy, precision=precision)
    all_stages = {
        "sft": Stage(
            name="sft",
            kind="sft",
            parent="base",
            domains={"math": 1.0},
            params=SFTParams(optim=optim, steps=10, batch_size=8, micro_batch=2),
            resources=res,
            hash="a" * 64,
        ),
        "rl": Stage(
            name="rl",
            kind="grpo",
            parent="sft",
            domains={"math": 1.0},
            params=GRPOParams(optim=optim, steps=5, prompts_per_step=4, rollouts_per_prompt=4),
            resources=res,
            hash="b" * 64,
        ),
    }
    return Plan(
        name=name,
        base=ModelRef(kind="path", name=model),
        domains={"math": domain},
        stages=[all_stages[s] for s in stages],
        source="specs/demo.cascade",
    )


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- files and configs


def test_single_node_ddp_files() -> None:
    files = render_files(make_plan())
    assert sorted(files) == [
        "plan.json",
        "stages/rl/accelerate.yaml",
        "stages/rl/launch.sh",
        "stages/rl/sbatch.sh",
        "stages/sft/accelerate.yaml",
        "stages/sft/launch.sh",
        "stages/sft/sbatch.sh",
    ]
    assert Plan.from_json(files["plan.json"]) == make_plan()
    launch = files["stages/rl/launch.sh"]
    assert launch.startswith("#!/usr/bin/env bash\n")
    assert "rdzv=(--standalone)" in launch
    assert "--nnodes 1 --nproc-per-node 2" in launch
    assert "--stage rl --run-dir" in launch
    cfg = yaml.safe_load(files["stages/rl/accelerate.yaml"])
    assert cfg["distributed_type"] == "MULTI_GPU"
    assert cfg["num_processes"] == 2 and cfg["num_machines"] == 1
    assert cfg["mixed_precision"] == "bf16"


def test_zero_strategies_get_a_deepspeed_config() -> None:
    for zero in (1, 2, 3):
        files = render_files(make_plan(strategy=f"zero{zero}"))
        ds = json.loads(files["stages/rl/ds_config.json"])
        # 4 prompts x 4 rollouts = 16 sequences = micro 1 x accumulation 8 x 2 ranks
        assert ds["train_batch_size"] == 16
        assert ds["train_micro_batch_size_per_gpu"] == 1
        assert ds["gradient_accumulation_steps"] == 8
        assert ds["gradient_clipping"] == 0.5
        assert ds["bf16"] == {"enabled": True}
        assert ds["zero_optimization"]["stage"] == zero
        assert ("stage3_gather_16bit_weights_on_model_save" in ds["zero_optimization"]) == (zero == 3)
        sft = json.loads(files["stages/sft/ds_config.json"])
        assert (sft["train_batch_size"], sft["train_micro_batch_size_per_gpu"], sft["gradient_accumulation_steps"]) == (
            8,
            2,
            2,
        )
        assert "export ACCELERATE_USE_DEEPSPEED=true" in files["stages/rl/launch.sh"]
        assert yaml.safe_load(files["stages/rl/accelerate.yaml"])["deepspeed_config"] == {
            "deepspeed_config_file": "ds_config.json"
        }


def test_precision_auto_leaves_the_choice_to_the_runtime() -> None:
    plan = make_plan(strategy="zero2", precision="auto")
    stage = plan.stage("rl")
    assert deepspeed_config(stage)["bf16"] == {"enabled": "auto"}
    assert all(k != "ACCELERATE_MIXED_PRECISION" for k, _ in accelerate_env(stage))
    assert "mixed_precision" not in yaml.safe_load(render_files(plan)["stages/rl/accelerate.yaml"])


def test_fsdp2_env() -> None:
    env = dict(accelerate_env(make_plan(strategy="fsdp2").stage("rl")))
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert deepspeed_config(make_plan(strategy="fsdp2").stage("rl")) is None


def test_uneven_zero_batch_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="multiple of 6"):
        render_files(make_plan(strategy="zero2", nproc=3))


def test_multi_node_gets_sbatch() -> None:
    files = render_files(make_plan(nnodes=4, nproc=8))
    sbatch = files["stages/rl/sbatch.sh"]
    assert "#SBATCH --nodes=4\n" in sbatch
    assert "#SBATCH --gpus-per-node=8\n" in sbatch
    assert "#SBATCH --job-name=demo.rl\n" in sbatch
    assert "scontrol show hostnames" in sbatch
    assert "--rdzv-backend c10d" in files["stages/rl/launch.sh"]
    single = render_files(make_plan())["stages/rl/sbatch.sh"]  # every stage is a Slurm job too
    assert "#SBATCH --nodes=1\n" in single and "#SBATCH --requeue\n" in single


def test_inputs_are_local_paths_only() -> None:
    plan = make_plan()
    assert stage_inputs(plan, plan.stage("rl")) == ["data/math-eval.jsonl", "data/math.jsonl", "models/base"]


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\nb"])
def test_names_that_are_not_directory_names_are_refused(bad: str) -> None:
    with pytest.raises(RenderError, match="directory name"):
        render_files(make_plan(name=bad))


def test_templates_refuse_unquoted_values() -> None:
    with pytest.raises(RenderError, match="without a quoting filter"):
        _ENV.from_string("echo {{ x }}").render(x="$(touch PWNED)")
    assert _ENV.from_string("echo {{ x | shquote }}").render(x="a b") == "echo 'a b'"


# ---------------------------------------------------------------- writing


def test_render_twice_is_byte_identical(tmp_path: Path) -> None:
    plan = make_plan(strategy="zero3", nnodes=2)
    first = tree(render_plan(plan, tmp_path / "a"))
    second = tree(render_plan(plan, tmp_path / "b"))
    again = tree(render_plan(plan, tmp_path / "a"))
    assert first == second == again
    assert first == {k: v.encode() for k, v in render_files(plan).items()}
    out = tmp_path / "a" / "demo"
    assert os.stat(out / "stages/rl/launch.sh").st_mode & stat.S_IXUSR
    assert not os.stat(out / "stages/rl/ds_config.json").st_mode & stat.S_IXUSR
    assert not list(out.rglob("*.tmp"))


def test_rerender_removes_stale_generated_files_only(tmp_path: Path) -> None:
    out = render_plan(make_plan(strategy="zero2", nnodes=2), tmp_path)
    (out / "stages/sft/notes.txt").write_text("mine")
    render_plan(make_plan(stages=("sft",)), tmp_path)
    assert tree(out).keys() == {
        "plan.json",
        "stages/sft/accelerate.yaml",
        "stages/sft/launch.sh",
        "stages/sft/notes.txt",
        "stages/sft/sbatch.sh",
    }
    assert not (out / "stages/rl").exists()


def test_refuses_to_write_into_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "thesis.tex").write_text("x")
    with pytest.raises(RenderError, match="not made by cascadec"):
        render_plan(make_plan(), tmp_path)


# ---------------------------------------------------------------- running the scripts (security)


def _run(script: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ["PATH"], **(env or {})}
    return subprocess.run([BASH, str(script), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=30)


@needs_bash
@pytest.mark.parametrize("switch", ["flag", "env"])
def test_dry_run_never_executes_values(tmp_path: Path, switch: str) -> None:
    plan = make_plan(name=EVIL_NAME, model=EVIL, data=f"/data/{EVIL}")
    out = render_plan(plan, tmp_path / "build")
    work = tmp_path / "work"
    work.mkdir()
    args, env = (["--dry-run"], {}) if switch == "flag" else ([], {"CASCADEC_DRY_RUN": "1"})
    proc = _run(out / "stages/rl/launch.sh", *args, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("PWNED")), "a value in the plan was executed"
    assert f"input: {EVIL}\n" in proc.stdout
    assert f"input: /data/{EVIL}\n" in proc.stdout
    command = proc.stdout.splitlines()[-1]
    assert command.startswith("torchrun --nnodes 1 --nproc-per-node 2 --standalone -m runtime.entry --plan ")
    assert command.endswith(f"/{EVIL_NAME}/plan.json --stage rl --run-dir runs/{EVIL_NAME}")


@needs_bash
def test_multi_node_dry_run_never_executes_values(tmp_path: Path) -> None:
    plan = make_plan(name=EVIL_NAME, model=EVIL, data=EVIL, nnodes=2)
    out = render_plan(plan, tmp_path / "build")
    proc = _run(out / "stages/rl/sbatch.sh", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("PWNED"))
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("python3 -m runtime.slurm.job --plan ")
    assert " -- srun --nodes=2 --ntasks-per-node=1 --kill-on-bad-exit=1 bash " in lines[0]
    assert f"input: {EVIL}\n" in proc.stdout
    assert "--rdzv-backend c10d --rdzv-endpoint first-node-of-the-allocation:29500" in lines[-1]


@needs_bash
def test_real_launch_passes_values_as_single_arguments(tmp_path: Path) -> None:
    """With the inputs present, launch.sh execs torchrun; a stub records the exact argv it got."""
    data = tmp_path / f"data {EVIL}"
    data.write_text("{}\n")
    model = tmp_path / "model"
    model.mkdir()
    eval_data = tmp_path / "eval.jsonl"
    eval_data.write_text("{}\n")
    plan = make_plan(name=EVIL_NAME, model=str(model), data=str(data), eval_data=str(eval_data))
    out = render_plan(plan, tmp_path / "build")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "torchrun"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "$ARGV_FILE"\n')
    stub.chmod(0o755)
    argv_file = tmp_path / "argv"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_FILE": str(argv_file)}
    run_dir = tmp_path / f"runs {EVIL}"
    proc = _run(out / "stages/sft/launch.sh", f"--run-dir={run_dir}", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("PWNED"))
    argv = argv_file.read_text().split("\0")[:-1]
    plan_json = (out / "plan.json").resolve()
    assert argv == [
        "--nnodes", "1", "--nproc-per-node", "2", "--standalone", "-m", "runtime.entry",
        "--plan", str(plan_json), "--stage", "sft", "--run-dir", str(run_dir),
    ]  # fmt: skip


@needs_bash
def test_missing_input_stops_before_launch(tmp_path: Path) -> None:
    out = render_plan(make_plan(), tmp_path / "build")
    proc = _run(out / "stages/sft/launch.sh", cwd=tmp_path)
    assert proc.returncode == 1
    assert "launch.sh: input not found: data/math.jsonl" in proc.stderr
    assert "launch.sh: input not found: models/base" in proc.stderr


@needs_bash
def test_unknown_argument_is_a_usage_error(tmp_path: Path) -> None:
    out = render_plan(make_plan(), tmp_path / "build")
    proc = _run(out / "stages/sft/launch.sh", "--bogus", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown argument: --bogus" in proc.stderr


@needs_bash
def test_multi_node_launch_without_master_addr_is_refused(tmp_path: Path) -> None:
    out = render_plan(make_plan(nnodes=2), tmp_path / "build")
    proc = _run(out / "stages/sft/launch.sh", cwd=tmp_path)
    assert proc.returncode == 2
    assert "set MASTER_ADDR" in proc.stderr


# ---------------------------------------------------------------- accelerate reads what we write


def test_accelerate_loads_the_rendered_configs(tmp_path: Path) -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils.deepspeed import HfDeepSpeedConfig

    zero = render_plan(make_plan(name="z", strategy="zero3", nnodes=2), tmp_path)
    cfg = load_config_from_file(str(zero / "stages/rl/accelerate.yaml"))  # raises on unknown keys
    assert (cfg.distributed_type.value, cfg.num_machines, cfg.num_processes) == ("DEEPSPEED", 2, 4)
    ds = HfDeepSpeedConfig(str(zero / "stages/rl/ds_config.json"))
    assert ds.is_zero3() and ds.get_value("train_micro_batch_size_per_gpu") == 1

    fsdp = render_plan(make_plan(name="f", strategy="fsdp2"), tmp_path)
    cfg = load_config_from_file(str(fsdp / "stages/rl/accelerate.yaml"))
    assert cfg.distributed_type.value == "FSDP" and cfg.fsdp_config["fsdp_version"] == 2


def test_accelerate_plugin_reads_the_exported_fsdp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate.utils import FullyShardedDataParallelPlugin

    for key, value in accelerate_env(make_plan(strategy="fsdp2").stage("rl")):
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.state_dict_type.name == "SHARDED_STATE_DICT"
    assert plugin.reshard_after_forward is True
