"""The servers that ``cascadec run`` starts for a stage: ``teacher_servers = { NAME = vllm(...) }`` and the rollout
server (``rollout = vllm(gpus = N)``).

Before the stage's process group starts, each gets ``vllm serve`` (vLLM's OpenAI-compatible API server) on its
port and its own GPUs of the node (after the training ranks' ``0..gpus-1``: the rollout server first, then the
teachers in the order written, when ``node_gpus`` is set), with ``--data-parallel-size`` replicas of
``tensor_parallel`` GPUs each. A teacher is served as its name from its checkpoint; the rollout server as
``policy`` from the base model (its weights are replaced by the policy's before the first rollout,
`runtime.rollout.server`), with vLLM's development endpoints (``VLLM_SERVER_DEV_MODE=1``: ``/collective_rpc``,
``/pause``, weight versions), ``--logprobs-mode processed_logprobs``, the stage's ``--max-model-len`` and
cascadec's worker extension (`runtime.serving.vllm_ext`). Logs go to ``stages/<stage>/servers/<name>.log``
(``rollout-server.log`` for the rollout server) with the process (group) id in ``<name>.pid`` beside it; the stage
starts only when every server's ``/health`` answers. The servers are stopped when the stage ends, however it ends.
The interpreter is ``$CASCADEC_VLLM_PYTHON`` (vLLM in its own venv, docs/serving.md), else this one;
``$CASCADEC_VLLM_ARGS`` adds arguments to every server (after cascadec's, so they win).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from cascadec.contract.plan import ROLLOUT_SERVER_KEY, Plan, Server, Stage
from cascadec.contract.serving import max_model_len
from runtime.serving.client import Endpoint, ServerError
from runtime.state import BASE, RunDir

HEALTH_POLL_S = 1.0
# the served model name of a rollout server `cascadec run` starts (its key among `started`'s endpoints is the
# contract's ROLLOUT_SERVER_KEY)
ROLLOUT = "policy"
# cascadec's vLLM worker extension (a directory of its own on the server's PYTHONPATH: nothing else of this
# environment leaks into vLLM's)
EXTENSION_DIR = Path(__file__).resolve().with_name("vllm_ext")
EXTENSION = "cascadec_weight_sync.WeightSync"


# where the servers on nodes of their own listen (`runtime.serving.nodes` sets it): a JSON object key -> URL
URLS_ENV = "CASCADEC_SERVER_URLS"


def _url(s: Server, key: str) -> str:
    """A server's URL: an endpoint's own; a server on nodes of its own from `URLS_ENV`; else 127.0.0.1 (a server
    on this node)."""
    if s.kind == "endpoint" and s.url:
        return s.url
    if not s.nodes:
        return f"http://127.0.0.1:{s.port}"
    url = json.loads(os.environ.get(URLS_ENV) or "{}").get(key)
    if not url:
        raise ServerError(f"`{key}` is served on {s.nodes} node(s) of its own, which only a Slurm job allocates"
                          "\nhelp: run the cascade with `cascadec run SPEC --launcher slurm` (or `sbatch` the stage's "
                          "sbatch.sh), or drop `nodes` to start the server beside the training ranks")
    return url


def endpoint(stage: Stage, name: str) -> Endpoint:
    """The endpoint of teacher ``name`` of ``stage`` (a server the run starts listens on 127.0.0.1)."""
    s = stage.resources.teacher_servers[name]
    url = _url(s, name)
    return Endpoint(url=url, model=s.model or name, name=name, timeout_s=s.timeout_s, retries=s.retries,
                    concurrency=s.concurrency)


def rollout_endpoint(stage: Stage) -> Endpoint | None:
    """The endpoint ``stage`` samples its rollouts from, or None when its engine runs in the training ranks."""
    s = stage.resources.rollout_server()
    if s is None:
        return None
    url = _url(s, ROLLOUT_SERVER_KEY)
    return Endpoint(url=url, model=s.model or ROLLOUT, name=s.model or ROLLOUT, timeout_s=s.timeout_s,
                    retries=s.retries, concurrency=s.concurrency, role="rollout")


def weights_dir(rd: RunDir, stage: Stage) -> Path:
    """Where the policy's weights are written for the rollout server to reload (one copy, replaced each step)."""
    return (rd.stage_dir(stage.name) / "rollout_weights").resolve()


def teacher_dir(plan: Plan, rd: RunDir, name: str) -> str:
    """The checkpoint directory (or hub id) a server of teacher ``name`` loads.

    Raises:
        ServerError: a random-init ``tiny`` base model, which has no directory to serve.
    """
    from runtime import external
    from runtime.models import packaged_checkpoint

    if name in plan.checkpoints:
        return external.checkpoint_dir(name, plan.checkpoints[name])
    if name != BASE:
        return str(rd.final(name))
    ref = plan.base
    if ref.kind == "packaged":
        return str(packaged_checkpoint(ref.name))
    if ref.kind in ("path", "hub"):
        return ref.name
    raise ServerError(f"the base model `{ref.name}` ({ref.kind}) has no checkpoint directory to serve"
                      "\nhelp: serve a trained stage, or load this teacher locally")


def server_command(model_dir: str, name: str, s: Server, dtype: str, extra: tuple[str, ...] = (), *,
                   host: str = "127.0.0.1", parallel: list[str] | None = None) -> list[str]:
    """The ``vllm serve`` command line of one server: ``parallel`` (data-parallel arguments; default: ``gpus /
    tensor_parallel`` replicas on this node), ``extra`` (the rollout server's), then ``$CASCADEC_VLLM_ARGS``,
    arguments of the site's own (``--enforce-eager --max-model-len 2048`` on a CPU test machine, ...)."""
    python = os.environ.get("CASCADEC_VLLM_PYTHON") or sys.executable
    replicas = s.gpus // s.tensor_parallel
    if parallel is None:
        parallel = ["--data-parallel-size", str(replicas)] if replicas > 1 else []
    return [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--served-model-name", name,
            "--host", host, "--port", str(s.port), "--tensor-parallel-size", str(s.tensor_parallel), *parallel,
            "--gpu-memory-utilization", str(s.memory), "--dtype", dtype, *extra,
            *shlex.split(os.environ.get("CASCADEC_VLLM_ARGS", ""))]


def rollout_args(plan: Plan, stage: Stage) -> tuple[str, ...]:
    """What a rollout server needs besides a teacher's: sampled-token log-probs after temperature, top-k and top-p
    (the denominator of the importance ratio), room for the stage's longest sequence, the weight reload."""
    return ("--logprobs-mode", "processed_logprobs", "--max-model-len", str(max_model_len(plan, stage)),
            "--worker-extension-cls", EXTENSION)


def _port_free(port: int) -> bool:
    """Nothing listens on ``port`` (connections of a stopped server in TIME_WAIT do not count: the server
    binds with SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(ep: Endpoint, proc: subprocess.Popen, startup_s: float, log: Path) -> None:
    """Wait until ``ep``'s ``/health`` answers 200.

    Raises:
        ServerError: the process exited, or ``startup_s`` passed; with the end of its log.
    """
    deadline = time.monotonic() + startup_s
    while not _healthy(ep.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with status {proc.returncode}" if proc.poll() is not None else \
                f"was not healthy after {startup_s:g} s"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.is_file() else ""
            raise ServerError(f"{ep.label} {why}; the end of {log}:\n{tail}\nhelp: fix what its log "
                              "says (vLLM installed? set CASCADEC_VLLM_PYTHON), or raise `startup` in `vllm(...)`")
        time.sleep(HEALTH_POLL_S)


def stop(proc: subprocess.Popen, grace_s: float = 30.0,
         first: Callable[[subprocess.Popen], None] | None = None) -> None:
    """Stop a server's process group: ``first(proc)`` (default: SIGTERM to the group), then SIGKILL to the group
    after ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        (first or (lambda p: os.killpg(p.pid, signal.SIGTERM)))(proc)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _dtype(stage: Stage) -> str:
    return {"fp32": "float32", "bf16": "bfloat16"}.get(stage.resources.precision, "auto")


def role_command(plan: Plan, rd: RunDir, stage: Stage, key: str, **where: object) -> tuple[list[str], dict[str, str]]:
    """The command and environment of server ``key`` of ``stage`` (`ROLLOUT_SERVER_KEY` or a teacher's name); ``where``
    goes to `server_command` (a server on nodes of its own listens on every address, with the pool's arguments)."""
    env = dict(os.environ)
    if key != ROLLOUT_SERVER_KEY:  # a teacher scores the stage's sequences: the KV cache CAS417 checks holds one
        s = stage.resources.teacher_servers[key]
        return server_command(teacher_dir(plan, rd, key), key, s, _dtype(stage), ("--max-model-len", str(
            max_model_len(plan, stage))), **where), env  # type: ignore[arg-type]
    env.update({"VLLM_SERVER_DEV_MODE": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, (str(EXTENSION_DIR), env.get("PYTHONPATH"))))})
    rollout = stage.resources.rollout_server()
    assert rollout is not None
    return server_command(teacher_dir(plan, rd, BASE), ROLLOUT, rollout, _dtype(stage), rollout_args(plan, stage),
                          **where), env  # type: ignore[arg-type]


def _roles(plan: Plan, rd: RunDir, stage: Stage, rollout_only: bool) -> list[tuple[str, Server, Endpoint, list[str],
                                                                             dict[str, str]]]:
    """The servers to start on this node: (log name, server, endpoint, command, environment), the rollout server
    first. Servers on nodes of their own are the Slurm job's (`runtime.serving.nodes`); their URLs must be known."""
    r = stage.resources
    out = []
    rollout = r.rollout_server()
    if rollout is not None and rollout.kind == "vllm":
        ep = rollout_endpoint(stage)
        if not rollout.nodes:
            out.append((ROLLOUT_SERVER_KEY, rollout, ep, *role_command(plan, rd, stage, ROLLOUT_SERVER_KEY)))
    if not rollout_only:
        for name, s in r.teacher_servers.items():
            ep = endpoint(stage, name)
            if s.kind == "vllm" and not s.nodes:
                out.append((name, s, ep, *role_command(plan, rd, stage, name)))
    return out


@contextlib.contextmanager
def started(plan: Plan, rd: RunDir, stage: Stage, *, rollout_only: bool = False) -> Iterator[dict[str, Endpoint]]:
    """Start ``stage``'s ``vllm`` servers (only the rollout server with ``rollout_only``: evaluation jobs), wait
    until all are healthy, yield their endpoints (teachers by name, the rollout server as `ROLLOUT_SERVER_KEY`), and stop
    them at the end, removing the rollout server's copy of the policy's weights.

    Raises:
        ServerError: a port already in use, a server that exits or never gets healthy.
    """
    r = stage.resources
    procs: list[subprocess.Popen] = []
    waits: list[tuple[Endpoint, subprocess.Popen, float, Path]] = []
    first_gpu = r.nproc_per_node
    try:
        for name, s, ep, cmd, env in _roles(plan, rd, stage, rollout_only):
            if not _port_free(s.port):
                raise ServerError(f"port {s.port} of {ep.label} is in use"
                                  "\nhelp: stop what listens there (an earlier server?) and run again")
            if r.node_gpus is not None:
                env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(str(first_gpu + k) for k in range(s.gpus))}
                first_gpu += s.gpus
            log = rd.stage_dir(stage.name) / "servers" / f"{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as fh:
                procs.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                              start_new_session=True))
            log.with_suffix(".pid").write_text(f"{procs[-1].pid}\n")
            waits.append((ep, procs[-1], s.startup_s, log))
        for ep, proc, startup_s, log in waits:
            wait_healthy(ep, proc, startup_s, log)
        yield {log.stem: ep for ep, _, _, log in waits}
    finally:
        for proc in procs:
            stop(proc)
        if r.rollout_server() is not None:
            shutil.rmtree(weights_dir(rd, stage), ignore_errors=True)


def served(plan: Plan, rd: RunDir, stage: Stage, run: Callable[[], tuple[int, str | None]], *,
           rollout_only: bool = False, start: bool = True) -> tuple[int, str | None]:
    """``run()`` (a stage's process group: exit status, user-facing error) while ``stage``'s servers are up
    (`started`; none with ``start=False``). A server that cannot start is the stage's error (status 2), before any
    of its processes runs."""
    if not start:
        return run()
    try:
        with started(plan, rd, stage, rollout_only=rollout_only):
            return run()
    except ServerError as exc:
        return 2, f"stage `{stage.name}`: {exc}"


def main(argv: list[str] | None = None) -> int:
    """``python -m runtime.serving.servers --plan P --stage S --run-dir D -- CMD...`` (the rendered launch.sh):
    run CMD while the stage's servers are up; exit with CMD's status, or 2 when a server fails."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m runtime.serving.servers")
    parser.add_argument("--plan", required=True)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    plan = Plan.from_json(Path(args.plan).read_text(encoding="utf-8"))
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    try:
        with started(plan, RunDir(args.run_dir), plan.stage(args.stage)):
            return subprocess.call(cmd)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
