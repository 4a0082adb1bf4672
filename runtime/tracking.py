"""Experiment trackers: each stage's metrics streamed to TensorBoard, Weights & Biases, MLflow or trackio.

`Plan.tracking` names the trackers (`tracking = [...]` in the spec); ``$CASCADEC_TRACKING`` (a comma-separated
list, set by ``cascadec run --tracking``) overrides it. Each stage is one run of each tracker, grouped by the
cascade's name (W&B ``group``, MLflow experiment, trackio ``group``); the run's config is the stage's resolved
plan entry, including its ``hash``. Training metrics go under ``train/`` at the 0-based step index; eval scores
under ``eval/<domain>.<eval>`` at the number of finished steps (as in ``metrics.jsonl`` and ``evals.jsonl``).
At the end of a stage the table of every eval record so far (base model and finished stages) is logged.

Resume without duplicated steps: TensorBoard purges events after the resume step (``purge_step``) and is sent
the re-run's values. The other trackers are append-only, so ``stages/<stage>/tracking.json`` records, for each
of them, its run id and the last train and eval step sent; it is written before each send, so a step reaches a
tracker at most once (a SIGKILL can lose steps a tracker had not flushed yet). A resumed stage re-opens the same
run and skips the steps it already sent.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Iterable

from cascadec.contract.errors import UserError
from cascadec.contract.plan import TRACKERS, Plan, Stage
from cascadec.contract.suggest import suggest
from runtime.state import RunDir, atomic_write_json, read_jsonl

ENV = "CASCADEC_TRACKING"
EVAL_COLUMNS = ("stage", "step", "domain", "eval", "metric", "score")


class TrackingError(UserError):
    """A tracker that cannot be used: unknown name, package not installed, or its run could not start."""


def chosen(plan: Plan) -> list[str]:
    """The trackers of this run: ``$CASCADEC_TRACKING`` when set (empty means none), else ``plan.tracking``."""
    raw = os.environ.get(ENV)
    if raw is None:
        return list(plan.tracking)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for name in names:
        if name not in TRACKERS:
            near = suggest(name, TRACKERS)
            raise TrackingError(f"unknown tracker `{name}` in ${ENV}" + (f"; did you mean `{near}`?" if near else
                                f"; use {', '.join(TRACKERS)}"))
    return list(dict.fromkeys(names))


def stage_config(plan: Plan, stage: Stage) -> dict[str, Any]:
    """The run's config: the cascade's name and the stage's resolved plan entry (with its ``hash``)."""
    return {"cascade": plan.name, **stage.model_dump(mode="json", exclude={"origin"})}


def _import(module: str, tracker: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TrackingError(f"tracker `{tracker}` is not installed ({exc}); install it with "
                            f"`pip install 'cascadec[{tracker}]'` or remove it from `tracking`") from None


# ------------------------------------------------------------------ one class per tracker


class TensorBoard:
    """Event files in ``RUN_DIR/tb/<stage>/``; tags ``<stage>/<metric>`` and ``eval/<domain>.<eval>``."""

    append_only = False

    def __init__(self, plan: Plan, stage: Stage, rd: RunDir, start_step: int, saved: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.stage = stage.name
        # purge_step drops events a crashed attempt wrote after the checkpoint
        self.writer = SummaryWriter(str(rd.tb(stage.name)), purge_step=start_step)
        self.identity: dict[str, Any] = {}
        # the purge also took the evals recorded at the resume step itself (they ran before its checkpoint)
        kept = [r for r in read_jsonl(rd.evals_jsonl) if r.get("stage") == stage.name and r.get("step") == start_step]
        if start_step and kept:
            self.log("eval", {f"{r['domain']}.{r['eval']}": r["score"] for r in kept}, start_step)

    def log(self, space: str, metrics: dict[str, float], step: int) -> None:
        prefix = self.stage if space == "train" else space
        for key, value in metrics.items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def table(self, rows: list[dict[str, Any]], step: int) -> None:
        head = "| " + " | ".join(EVAL_COLUMNS) + " |\n|" + "---|" * len(EVAL_COLUMNS) + "\n"
        body = "".join("| " + " | ".join(str(r.get(c, "")) for c in EVAL_COLUMNS) + " |\n" for r in rows)
        self.writer.add_text("evals", head + body, step)

    def close(self, ok: bool) -> None:
        self.writer.close()


class WandB:
    """A W&B run per stage: project ``$WANDB_PROJECT`` (default ``cascadec``), group = cascade, name = stage.
    Files go to ``$WANDB_DIR`` or ``RUN_DIR/wandb/``; ``WANDB_MODE=offline`` works without an account."""

    append_only = True

    def __init__(self, plan: Plan, stage: Stage, rd: RunDir, start_step: int, saved: dict[str, Any]) -> None:
        wandb = _import("wandb", "wandb")
        self.wandb = wandb
        run_id = saved.get("id") or secrets.token_hex(8)
        try:
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "cascadec"), group=plan.name, name=stage.name,
                job_type=stage.kind, id=run_id, resume="allow", config=stage_config(plan, stage),
                dir=None if os.environ.get("WANDB_DIR") else str(rd.root), reinit="finish_previous",
            )
        except Exception as exc:  # wandb raises its own types (no login, no network): say what to set
            raise TrackingError(f"W&B could not start a run: {exc}; log in (`wandb login`) or set "
                                "WANDB_MODE=offline") from None
        self.identity = {"id": run_id}

    def log(self, space: str, metrics: dict[str, float], step: int) -> None:
        self.run.log({f"{space}/{k}": v for k, v in metrics.items()}, step=step)

    def table(self, rows: list[dict[str, Any]], step: int) -> None:
        table = self.wandb.Table(columns=list(EVAL_COLUMNS), data=[[r.get(c) for c in EVAL_COLUMNS] for r in rows])
        self.run.log({"evals": table}, step=step)

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)
        self.wandb.teardown()  # finish() can return before the service has written the run's last records


class MLflow:
    """An MLflow run per stage in the experiment named after the cascade (``$MLFLOW_EXPERIMENT_NAME``
    overrides it), at ``$MLFLOW_TRACKING_URI`` or else a file store in ``RUN_DIR/mlruns``."""

    append_only = True

    def __init__(self, plan: Plan, stage: Stage, rd: RunDir, start_step: int, saved: dict[str, Any]) -> None:
        tracking = _import("mlflow.tracking", "mlflow")
        self.entities = _import("mlflow.entities", "mlflow")
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            # MLflow 3 refuses file stores unless asked; a run directory holds no database server
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (rd.root / "mlruns").resolve().as_uri()
        self.client = tracking.MlflowClient(tracking_uri=uri)
        run_id = saved.get("run_id")
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
        else:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", plan.name)
            found = self.client.get_experiment_by_name(name)
            experiment = found.experiment_id if found else self.client.create_experiment(name)
            run_id = self.client.create_run(experiment, run_name=stage.name,
                                            tags={"cascade": plan.name, "stage_hash": stage.hash}).info.run_id
            params = [self.entities.Param(k, str(v)) for k, v in _flat(stage_config(plan, stage))]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(run_id, params=params[i:i + 100])
        self.run_id = run_id
        self.identity = {"run_id": run_id}

    def log(self, space: str, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [self.entities.Metric(f"{space}/{k}", float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def table(self, rows: list[dict[str, Any]], step: int) -> None:
        self.client.log_table(self.run_id, {c: [r.get(c) for r in rows] for c in EVAL_COLUMNS}, "evals.json")

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


class Trackio:
    """A trackio run per stage in project ``cascadec``, group = cascade; trackio's local store lives in
    ``$TRACKIO_DIR`` (default ``~/.cache/huggingface/trackio``)."""

    append_only = True

    def __init__(self, plan: Plan, stage: Stage, rd: RunDir, start_step: int, saved: dict[str, Any]) -> None:
        self.trackio = _import("trackio", "trackio")
        name = saved.get("name") or f"{stage.name}-{secrets.token_hex(3)}"
        self.run = self.trackio.init(project="cascadec", name=name, group=plan.name,
                                     config=stage_config(plan, stage), resume="allow", embed=False,
                                     auto_log_gpu=False, auto_log_cpu=False)
        self.identity = {"name": name}

    def log(self, space: str, metrics: dict[str, float], step: int) -> None:
        self.run.log({f"{space}/{k}": v for k, v in metrics.items()}, step=step)

    def table(self, rows: list[dict[str, Any]], step: int) -> None:
        table = self.trackio.Table(columns=list(EVAL_COLUMNS), data=[[r.get(c) for c in EVAL_COLUMNS] for r in rows])
        self.run.log({"evals": table}, step=step)

    def close(self, ok: bool) -> None:
        self.run.finish()


BACKENDS = {"tensorboard": TensorBoard, "wandb": WandB, "mlflow": MLflow, "trackio": Trackio}


def _flat(config: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in config.items():
        if isinstance(value, dict) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


# ------------------------------------------------------------------ the stage's trackers together


class Trackers:
    """Every tracker of one stage (rank 0 only). ``sent`` is the persisted record of what each append-only
    tracker already received (see the module docstring)."""

    def __init__(self, backends: dict[str, Any], sent: dict[str, dict[str, Any]], path: Path) -> None:
        self.backends, self.sent, self.path = backends, sent, path
        self.last_step = 0

    def log(self, space: str, metrics: dict[str, float], step: int) -> None:
        """Send ``metrics`` (``space`` is ``train`` or ``eval``) at ``step`` to every tracker that has not
        received this space's ``step`` yet."""
        if not metrics:
            return
        self.last_step = max(self.last_step, step)
        fresh = [n for n, b in self.backends.items() if not b.append_only or step > self.sent[n].get(space, -1)]
        for name in fresh:
            if self.backends[name].append_only:
                self.sent[name][space] = step
        if any(self.backends[n].append_only for n in fresh):
            atomic_write_json(self.path, self.sent)
        for name in fresh:
            self.backends[name].log(space, metrics, step)

    def table(self, rows: list[dict[str, Any]]) -> None:
        for backend in self.backends.values():
            backend.table(rows, self.last_step)

    def close(self, ok: bool) -> None:
        for backend in self.backends.values():
            backend.close(ok)


def open_trackers(plan: Plan, stage: Stage, rd: RunDir, start_step: int) -> Trackers:
    """Start (or resume) this stage's run in every chosen tracker. Raises `TrackingError`."""
    path = rd.stage_dir(stage.name) / "tracking.json"
    previous = read_json_or_empty(path)
    backends: dict[str, Any] = {}
    sent: dict[str, dict[str, Any]] = {}
    try:
        for name in chosen(plan):
            saved = previous.get(name, {})
            backends[name] = BACKENDS[name](plan, stage, rd, start_step, saved)
            sent[name] = {**saved, **backends[name].identity}
    except BaseException:
        Trackers(backends, sent, path).close(ok=False)
        raise
    atomic_write_json(path, sent)
    return Trackers(backends, sent, path)


def read_json_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged record only costs the resume its skip list; the runs start afresh
    return data if isinstance(data, dict) else {}


def eval_rows(rd: RunDir) -> list[dict[str, Any]]:
    """Every eval record so far (base model and stages), for the eval table."""
    return [{c: r.get(c) for c in EVAL_COLUMNS} for r in read_jsonl(rd.evals_jsonl)]
