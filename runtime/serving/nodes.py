"""Servers on nodes of their own (``vllm(nodes = K)`` in a stage's ``resources``) in the stage's Slurm job.

NeMo-RL puts its teachers (and, non-colocated, its generation workers) on nodes of their own; so does this. The
stage's ``sbatch.sh`` allocates its ``nnodes`` training nodes plus each such server's ``nodes`` in one job, and
runs, on the first training node::

    python -m runtime.serving.nodes up --plan P --stage S --run-dir D --hosts H1,H2,... -- python -m runtime.slurm.job ...

``up`` starts each server as an ``srun`` step on its nodes (``--hosts``, the allocation's nodes after the training
ones, in the order of `Resources.node_servers`), waits until each answers ``/health`` at its first node (from
this training node, so the training nodes can reach it), runs the job with the servers' URLs in
`runtime.serving.servers.URLS_ENV` (the job's ``srun`` step and its ranks inherit it), and stops the server
steps when the job ends, however it ends. Every decision of the job (skip, re-evaluate, resume) is the local
run's, as without servers.

On each of a server's nodes ``python -m runtime.serving.nodes serve KEY ...`` runs ``vllm serve`` listening on
every address: one data-parallel pool over the server's nodes (vLLM's multi-node data parallelism: the first
node serves the API, the others run ``--headless`` engines), ``tensor_parallel`` GPUs per replica inside a node.
It ignores SIGTERM: Slurm's time-limit warning (``--signal``), preemption and ``scancel`` reach every step, and
the training ranks still need the server to finish and checkpoint their step; ``up`` stops it with SIGUSR1,
and Slurm kills it when the job ends. A rollout server on other nodes reloads the policy's weights from
``stages/<stage>/rollout_weights/`` in the run directory, which must be on a file system those nodes share.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from cascadec.contract.plan import ROLLOUT_SERVER_KEY, Plan, Server, Stage
from runtime.serving.client import Endpoint, ServerError
from runtime.serving.servers import ROLLOUT, URLS_ENV, role_command, stop, wait_healthy
from runtime.state import RunDir

#: how long a server step gets to stop after SIGUSR1 before it is killed
STOP_GRACE_S = 30.0


def placements(stage: Stage, hosts: list[str]) -> list[tuple[str, Server, list[str]]]:
    """(key, server, its hosts) of each server on nodes of its own, the nodes taken in order from ``hosts``.

    Raises:
        ServerError: fewer hosts than the servers' nodes (an allocation that is not the rendered sbatch.sh's).
    """
    need = sum(s.nodes for _, s in stage.resources.node_servers())
    if len(hosts) < need:
        raise ServerError(f"stage `{stage.name}`'s servers take {need} node(s) of their own, but the job gave them "
                          f"{len(hosts)} ({', '.join(hosts) or 'none'})\nhelp: submit the stage's sbatch.sh, "
                          "which allocates the training nodes and the servers' nodes together")
    out, first = [], 0
    for key, s in stage.resources.node_servers():
        out.append((key, s, hosts[first:first + s.nodes]))
        first += s.nodes
    return out


def srun_command(plan_json: Path, rd: RunDir, stage: Stage, key: str, s: Server, hosts: list[str]) -> list[str]:
    """The ``srun`` step that runs server ``key`` on ``hosts``: one task per node, each `serve`."""
    return ["srun", f"--nodes={s.nodes}", f"--ntasks={s.nodes}", "--ntasks-per-node=1",
            f"--nodelist={','.join(hosts)}", "--kill-on-bad-exit=1", "--label",
            os.environ.get("CASCADEC_PYTHON") or sys.executable, "-m", "runtime.serving.nodes", "serve", key,
            "--head", hosts[0], "--plan", str(plan_json), "--stage", stage.name, "--run-dir", str(rd.root)]


def _halt(proc: subprocess.Popen) -> None:
    """Stop a server step: SIGUSR1 to srun (which passes it to the tasks), then SIGKILL to its process group."""
    stop(proc, STOP_GRACE_S, first=lambda p: p.send_signal(signal.SIGUSR1))


@contextlib.contextmanager
def up(plan_json: Path, rd: RunDir, stage: Stage, hosts: list[str]) -> Iterator[dict[str, str]]:
    """Start ``stage``'s servers on nodes of their own, wait until each is healthy, yield key -> URL, stop them.

    Raises:
        ServerError: too few hosts, a server step that exits or is not healthy within its ``startup``.
    """
    procs: list[subprocess.Popen] = []
    try:
        waits = []
        for key, s, mine in placements(stage, hosts):
            log = rd.stage_dir(stage.name) / "servers" / f"{key}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as fh:
                procs.append(subprocess.Popen(srun_command(plan_json, rd, stage, key, s, mine), stdout=fh,
                                              stderr=subprocess.STDOUT, start_new_session=True))
            log.with_suffix(".pid").write_text(f"{procs[-1].pid}\n")
            role = "rollout" if key == ROLLOUT_SERVER_KEY else "teacher"
            ep = Endpoint(url=f"http://{mine[0]}:{s.port}", model=ROLLOUT if role == "rollout" else key,
                          name=ROLLOUT if role == "rollout" else key, role=role)
            waits.append((ep, procs[-1], s.startup_s, log))
        for ep, proc, startup_s, log in waits:
            wait_healthy(ep, proc, startup_s, log)
        yield {log.stem: ep.url for ep, _, _, log in waits}
    finally:
        for proc in procs:
            _halt(proc)


def parallel_args(s: Server, gpus: int, node: int, head: str) -> list[str]:
    """vLLM's data-parallel arguments of node ``node`` of a server of ``s.nodes`` nodes with ``gpus`` GPUs each:
    ``gpus / tensor_parallel`` replicas per node, the first node's API server in front of all of them."""
    local = gpus // s.tensor_parallel
    if s.nodes == 1:
        return ["--data-parallel-size", str(local)] if local > 1 else []
    out = ["--data-parallel-size", str(local * s.nodes), "--data-parallel-size-local", str(local),
           "--data-parallel-address", head]
    return out + (["--headless", "--data-parallel-start-rank", str(node * local)] if node else [])


def serve(plan: Plan, rd: RunDir, stage: Stage, key: str, head: str) -> int:
    """Run server ``key``'s part on this node (``$SLURM_NODEID`` of its step) until SIGUSR1; its exit status."""
    r = stage.resources
    s = dict(r.node_servers())[key]
    node = int(os.environ.get("SLURM_NODEID", "0"))
    cmd, env = role_command(plan, rd, stage, key, host="0.0.0.0",
                            parallel=parallel_args(s, r.server_gpus(s), node, head))
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def halt(_signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, lambda *_: print(f"{key}: SIGTERM ignored; the stage stops this server when its "
                                                   "ranks have checkpointed", file=sys.stderr, flush=True))
    signal.signal(signal.SIGUSR1, halt)
    return proc.wait()


def _run(cmd: list[str], env: dict[str, str]) -> int:
    """``cmd`` with SIGTERM and SIGINT passed on to it (the job checkpoints the stage), its exit status."""
    child = subprocess.Popen(cmd, env=env)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda n, _f: child.send_signal(n))
    return child.wait()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(prog="python -m runtime.serving.nodes")
    parser.add_argument("mode", choices=("up", "serve"))
    parser.add_argument("key", nargs="?", help="serve: the server (a teacher's name, or rollout-server)")
    parser.add_argument("--plan", required=True, type=Path)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--hosts", default="", help="up: the servers' nodes, comma-separated")
    parser.add_argument("--head", default="", help="serve: the server's first node")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    plan = Plan.from_json(args.plan.read_text(encoding="utf-8"))
    rd, stage = RunDir(args.run_dir), plan.stage(args.stage)
    if args.mode == "serve":
        return serve(plan, rd, stage, args.key, args.head)
    try:
        with up(args.plan, rd, stage, [h for h in args.hosts.split(",") if h]) as urls:
            return _run(cmd, {**os.environ, URLS_ENV: json.dumps(urls)})
    except ServerError as exc:
        print(f"error: stage `{stage.name}`: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
