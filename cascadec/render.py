"""Back end: `Plan` -> ``build/<name>/`` with ``plan.json`` and per-stage launch files.

Layout of one build directory::

    plan.json                       Plan.to_json()
    stages/<stage>/launch.sh        torchrun -m runtime.entry --plan ../../plan.json --stage <stage> ...
    stages/<stage>/accelerate.yaml  the same settings for `accelerate launch --config_file`
    stages/<stage>/ds_config.json   DeepSpeed ZeRO config (strategy zero1/zero2/zero3 only)
    stages/<stage>/sbatch.sh        the stage's Slurm job (runtime.slurm submits it; one srun task per node)

Shell scripts come from jinja2 templates in ``cascadec/templates``. Every interpolated value must pass
through a quoting filter (``shquote`` = `shlex.quote`, ``comment``, ``shname``, ``token``); the
environment's ``finalize`` hook refuses any value that did not, so a template cannot interpolate a raw
string by mistake. Configs are built as dicts and dumped with `json`/`yaml` (sorted keys). Output is
a pure function of the plan: byte-identical across runs and machines (no timestamps, no absolute paths).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

from cascadec import __version__
from cascadec.contract.fsutil import atomic_write_text
from cascadec.contract.plan import Plan, Stage, is_dir_name

#: Files the renderer writes into a stage directory (only these are ever deleted when stale).
STAGE_FILES = ("launch.sh", "sbatch.sh", "accelerate.yaml", "ds_config.json")
_EXECUTABLE = {"launch.sh", "sbatch.sh"}
_ZERO_STAGE = {"zero1": 1, "zero2": 2, "zero3": 3}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"[A-Za-z0-9._-]+")
#: Seconds before its time limit that Slurm sends a stage job SIGTERM (`#SBATCH --signal`): time to finish
#: the step in progress and write its checkpoint. `cascadec run --launcher slurm --signal-lead` overrides it.
SIGNAL_LEAD_S = 300


class RenderError(Exception):
    """The plan cannot be rendered as asked (a user-facing problem; the message says how to fix it)."""


class ShellWord(str):
    """Text that is safe to place in a shell script as is (already quoted or checked)."""


def shquote(value: object) -> ShellWord:
    """One shell word that expands to exactly ``str(value)`` (`shlex.quote`)."""
    if value is None:
        raise RenderError("a shell template received None; this is a bug in cascadec's templates")
    return ShellWord(shlex.quote(str(value)))


def comment(value: object) -> ShellWord:
    """``value`` as a JSON string literal, for shell comments: newlines and control characters are
    escaped, so a value can never end the comment line and start a command."""
    return ShellWord(json.dumps(str(value), ensure_ascii=False))


def shname(value: object) -> ShellWord:
    """An environment variable name, checked against ``[A-Za-z_][A-Za-z0-9_]*``."""
    text = str(value)
    if not _ENV_NAME.fullmatch(text):
        raise RenderError(f"`{text}` is not a valid environment variable name")
    return ShellWord(text)


def token(value: object) -> ShellWord:
    """A bare word of ``[A-Za-z0-9._-]`` (for ``#SBATCH`` lines, which sbatch parses without a shell)."""
    text = str(value)
    if not _TOKEN.fullmatch(text):
        raise RenderError(f"`{text}` is not a plain word of letters, digits, `.`, `_` or `-`")
    return ShellWord(text)


def _require_quoted(value: object) -> object:
    if not isinstance(value, ShellWord):
        raise RenderError(
            f"template interpolates {value!r} without a quoting filter; pipe it through `shquote` (bug in cascadec)"
        )
    return value


_ENV = Environment(
    loader=PackageLoader("cascadec", "templates"),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
    finalize=_require_quoted,
)
_ENV.filters.update(shquote=shquote, comment=comment, shname=shname, token=token)


# ---------------------------------------------------------------- what a stage needs


def check_path_component(kind: str, name: str) -> None:
    """Raise `RenderError` unless ``name`` can be one directory name (no ``/``, no control characters)."""
    if not is_dir_name(name):
        raise RenderError(
            f"{kind} name {name!r} cannot be used as a directory name; "
            "use letters, digits, `-`, `_` or `.` without `/` or control characters"
        )


def stage_inputs(plan: Plan, stage: Stage) -> list[str]:
    """Local files and directories ``stage`` reads from outside the run directory, sorted.

    These are the base model when it is a local path, the training data of the stage's domains, and
    the eval data of every domain (evals of all domains run after every stage).
    """
    paths: set[str] = set()
    if plan.base.kind == "path":
        paths.add(plan.base.name)
    sources = [plan.domains[d].train for d in stage.domains if d in plan.domains]
    sources += [e.data for domain in plan.domains.values() for e in domain.evals]
    paths.update(s.path for s in sources if s.kind in ("jsonl", "hf_disk") and s.path)
    return sorted(paths)


def deepspeed_config(stage: Stage) -> dict[str, Any] | None:
    """The DeepSpeed config of a ZeRO stage, ``None`` for other strategies.

    The global batch is the stage's sequences per optimizer step, split as
    ``micro_batch × gradient_accumulation_steps × data_parallel_size`` (DeepSpeed requires this product
    to equal ``train_batch_size`` exactly).

    Raises:
        RenderError: the batch does not split evenly (the compiler's CAS400 check normally catches it).
    """
    zero = _ZERO_STAGE.get(stage.resources.strategy)
    if zero is None:
        return None
    total, micro, dp = stage.params.sequences_per_step, stage.params.micro_batch, stage.data_parallel_size
    if total % (micro * dp):
        raise RenderError(
            f"stage `{stage.name}`: {total} sequences per step do not split into micro-batches of {micro} "
            f"over {dp} ranks; make the batch a multiple of {micro * dp}"
        )
    precision = stage.resources.precision
    zero_cfg: dict[str, Any] = {"stage": zero, "overlap_comm": True, "contiguous_gradients": True}
    if zero == 3:
        # children load the final checkpoint with from_pretrained, which needs whole 16-bit weights
        zero_cfg["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_batch_size": total,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": stage.accumulation_steps,
        "gradient_clipping": stage.params.optim.grad_clip,
        # "auto" lets accelerate fill it from the Accelerator's mixed_precision at run time
        "bf16": {"enabled": "auto" if precision == "auto" else precision == "bf16"},
        "zero_optimization": zero_cfg,
        "wall_clock_breakdown": False,
    }


def _mixed_precision(stage: Stage) -> str | None:
    return {"bf16": "bf16", "fp32": "no"}.get(stage.resources.precision)


def accelerate_env(stage: Stage) -> list[tuple[str, str]]:
    """Environment variables `accelerate launch` would export for this stage (accelerate 1.x names).

    ``precision = auto`` exports nothing, so the runtime picks bf16 on GPU and fp32 on CPU.
    """
    r = stage.resources
    env: list[tuple[str, str]] = []
    mixed = _mixed_precision(stage)
    if mixed:
        env.append(("ACCELERATE_MIXED_PRECISION", mixed))
    if r.device == "cpu":
        env.append(("ACCELERATE_USE_CPU", "true"))
    if r.strategy in _ZERO_STAGE:
        env.append(("ACCELERATE_USE_DEEPSPEED", "true"))
    elif r.strategy == "fsdp2":
        env += [
            ("ACCELERATE_USE_FSDP", "true"),
            ("FSDP_VERSION", "2"),
            ("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP"),
            ("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT"),
            ("FSDP_RESHARD_AFTER_FORWARD", "true"),
            ("FSDP_ACTIVATION_CHECKPOINTING", str(r.gradient_checkpointing).lower()),
        ]
    return env


def accelerate_config(stage: Stage) -> dict[str, Any]:
    """An `accelerate launch --config_file` config equivalent to `accelerate_env` (run it from the
    stage directory, where ``ds_config.json`` is)."""
    r = stage.resources
    processes = stage.data_parallel_size
    if r.strategy in _ZERO_STAGE:
        kind = "DEEPSPEED"
    elif r.strategy == "fsdp2":
        kind = "FSDP"
    elif processes == 1:
        kind = "NO"
    else:
        kind = "MULTI_CPU" if r.device == "cpu" else "MULTI_GPU"
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": kind,
        "machine_rank": 0,
        "num_machines": r.nnodes,
        "num_processes": processes,
        "rdzv_backend": "c10d" if r.nnodes > 1 else "static",
        "same_network": True,
        "use_cpu": r.device == "cpu",
    }
    mixed = _mixed_precision(stage)
    if mixed:
        cfg["mixed_precision"] = mixed
    if kind == "DEEPSPEED":
        cfg["deepspeed_config"] = {"deepspeed_config_file": "ds_config.json"}
    if kind == "FSDP":
        cfg["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_reshard_after_forward": True,
            "fsdp_activation_checkpointing": r.gradient_checkpointing,
        }
    return cfg


# ---------------------------------------------------------------- rendering


def render_stage(plan: Plan, stage: Stage) -> dict[str, str]:
    """The files of one stage directory: file name -> text."""
    check_path_component("stage", stage.name)
    ds = deepspeed_config(stage)
    context = {
        "version": __version__,
        "plan": plan,
        "stage": stage,
        "resources": stage.resources,
        "default_run_dir": f"runs/{plan.name}",
        "accelerate_env": accelerate_env(stage),
        "ds_config": "ds_config.json" if ds else None,
        "inputs": stage_inputs(plan, stage),
        "multi_node": stage.resources.nnodes > 1,
        "served": [*(["the rollout server"] if (r := stage.resources.rollout_server()) and r.kind == "vllm"
                     and not r.nodes else []),
                   *(f"teacher {n}" for n, srv in stage.resources.teacher_servers.items()
                     if srv.kind == "vllm" and not srv.nodes)],
        "node_servers": [(k, s.nodes) for k, s in stage.resources.node_servers()],
        "server_nodes": sum(s.nodes for _, s in stage.resources.node_servers()),
        "signal_lead_s": SIGNAL_LEAD_S,
        "job_name": re.sub(r"[^A-Za-z0-9._-]", "_", f"{plan.name}.{stage.name}"),
    }
    header = f"# Generated by cascadec {__version__}; run `accelerate launch --config_file accelerate.yaml` here.\n"
    files = {
        "launch.sh": _ENV.get_template("launch.sh.j2").render(context),
        "accelerate.yaml": header + yaml.safe_dump(accelerate_config(stage), sort_keys=True),
    }
    if ds:
        files["ds_config.json"] = json.dumps(ds, indent=2, sort_keys=True) + "\n"
    files["sbatch.sh"] = _ENV.get_template("sbatch.sh.j2").render(context)
    return files


def render_files(plan: Plan) -> dict[str, str]:
    """Every file of ``build/<name>/`` as relative POSIX path -> text (pure; used by `render_plan`).

    Raises:
        RenderError: a name is not a valid directory name, or a ZeRO batch does not split evenly.
    """
    check_path_component("cascade", plan.name)
    files = {"plan.json": plan.to_json()}
    for stage in plan.stages:
        for name, text in render_stage(plan, stage).items():
            files[f"stages/{stage.name}/{name}"] = text
    return files


def render_plan(plan: Plan, out_dir: str | Path) -> Path:
    """Write ``out_dir/<plan.name>/`` and return its path.

    Each file is written to a temporary name and `os.replace`d into place; generated files of stages
    that are no longer in the plan are removed, other files are left alone.

    Raises:
        RenderError: see `render_files`; also when the target exists and was not made by cascadec.
        OSError: the directory cannot be written.
    """
    files = render_files(plan)
    target = Path(out_dir) / plan.name
    if target.exists() and any(target.iterdir()) and not (target / "plan.json").is_file():
        raise RenderError(
            f"`{target}` exists and holds no plan.json, so it was not made by cascadec; "
            "remove it or pass another output directory with -o"
        )
    for rel, text in files.items():
        path = target / rel
        atomic_write_text(path, text, mode=0o755 if path.name in _EXECUTABLE else 0o644)
    _remove_stale(target, {rel for rel in files})
    return target


def _remove_stale(target: Path, written: set[str]) -> None:
    stages = target / "stages"
    if not stages.is_dir():
        return
    for stage_dir in sorted(stages.iterdir()):
        if not stage_dir.is_dir():
            continue
        for name in STAGE_FILES:
            if f"stages/{stage_dir.name}/{name}" not in written:
                (stage_dir / name).unlink(missing_ok=True)
        if not any(stage_dir.iterdir()):
            stage_dir.rmdir()
