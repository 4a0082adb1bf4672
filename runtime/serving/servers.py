"""Teacher servers that ``cascadec run`` starts for a stage (``teacher_servers = { NAME = vllm(...) }``).

Before the stage's process group starts, each ``vllm`` teacher gets ``vllm serve`` (vLLM's OpenAI-compatible
API server) on its port, its own GPUs of the node (after the training ranks' ``0..gpus-1``, in the order
written, when ``node_gpus`` is set), ``--served-model-name`` = the teacher's name, its log in
``stages/<stage>/servers/<teacher>.log`` and its process (group) id in ``<teacher>.pid`` beside it; the stage starts only when every server's ``/health`` answers. The
servers are stopped when the stage ends, however it ends. The interpreter is ``$CASCADEC_VLLM_PYTHON`` (vLLM in
its own venv, docs/serving.md), else this one; ``$CASCADEC_VLLM_ARGS`` adds arguments to every server.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cascadec.contract.plan import Plan, Server, Stage
from runtime.serving.client import Endpoint, ServerError
from runtime.state import BASE, RunDir

HEALTH_POLL_S = 1.0


def endpoint(stage: Stage, name: str) -> Endpoint:
    """The endpoint of teacher ``name`` of ``stage`` (a server the run starts listens on 127.0.0.1)."""
    s = stage.resources.teacher_servers[name]
    url = s.url if s.kind == "endpoint" and s.url else f"http://127.0.0.1:{s.port}"
    return Endpoint(url=url, model=s.model or name, name=name, timeout_s=s.timeout_s, retries=s.retries,
                    concurrency=s.concurrency)


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


def server_command(model_dir: str, name: str, s: Server, dtype: str) -> list[str]:
    """The ``vllm serve`` command line of one teacher server; ``$CASCADEC_VLLM_ARGS`` adds arguments of the site's
    own (``--enforce-eager --max-model-len 2048`` on a CPU test machine, ``--max-num-seqs``, ...)."""
    python = os.environ.get("CASCADEC_VLLM_PYTHON") or sys.executable
    return [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--served-model-name", name,
            "--host", "127.0.0.1", "--port", str(s.port), "--tensor-parallel-size", str(s.tensor_parallel),
            "--gpu-memory-utilization", str(s.memory), "--dtype", dtype,
            *shlex.split(os.environ.get("CASCADEC_VLLM_ARGS", ""))]


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
            raise ServerError(f"teacher server `{ep.name}` {why}; the end of {log}:\n{tail}\nhelp: fix what its log "
                              "says (vLLM installed? set CASCADEC_VLLM_PYTHON), or raise `startup` in `vllm(...)`")
        time.sleep(HEALTH_POLL_S)


def stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """Stop a server's process group: SIGTERM, then SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _dtype(stage: Stage) -> str:
    return {"fp32": "float32", "bf16": "bfloat16"}.get(stage.resources.precision, "auto")


@contextlib.contextmanager
def started(plan: Plan, rd: RunDir, stage: Stage) -> Iterator[dict[str, Endpoint]]:
    """Start ``stage``'s ``vllm`` teacher servers, wait until all are healthy, yield their endpoints, and stop
    them at the end.

    Raises:
        ServerError: a port already in use, a server that exits or never gets healthy.
    """
    r = stage.resources
    procs: list[subprocess.Popen] = []
    out: dict[str, Endpoint] = {}
    first_gpu = r.nproc_per_node
    try:
        for name, s in r.teacher_servers.items():
            if s.kind != "vllm":
                continue
            if not _port_free(s.port):
                raise ServerError(f"port {s.port} of teacher server `{name}` is in use"
                                  "\nhelp: stop what listens there (an earlier server?) and run again")
            env = dict(os.environ)
            if r.node_gpus is not None:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(first_gpu + k) for k in range(s.gpus))
                first_gpu += s.gpus
            log = rd.stage_dir(stage.name) / "servers" / f"{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as fh:
                procs.append(subprocess.Popen(server_command(teacher_dir(plan, rd, name), name, s, _dtype(stage)),
                                              stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True))
            log.with_suffix(".pid").write_text(f"{procs[-1].pid}\n")
            out[name] = endpoint(stage, name)
        for (name, ep), proc in zip(out.items(), procs):
            wait_healthy(ep, proc, r.teacher_servers[name].startup_s,
                         rd.stage_dir(stage.name) / "servers" / f"{name}.log")
        yield out
    finally:
        for proc in procs:
            stop(proc)


def main(argv: list[str] | None = None) -> int:
    """``python -m runtime.serving.servers --plan P --stage S --run-dir D -- CMD...`` (the rendered launch.sh):
    run CMD while the stage's teacher servers are up; exit with CMD's status, or 2 when a server fails."""
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
