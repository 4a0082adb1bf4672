"""Servers on nodes of their own (`vllm(nodes = K)`, issue 17): the rendered sbatch.sh allocates and splits the
nodes, and `runtime.serving.nodes` starts each server as an srun step on its nodes, waits for /health, hands the
URLs to the job and stops the servers.

The run test uses a stand-in `srun` (one local process per task, with the task's `SLURM_NODEID`) and a stand-in
vLLM API server (a small HTTP server that answers /health and records its arguments); the nodes are loopback
addresses 127.0.0.2, 127.0.0.3, ... (the test Slurm cluster has one node, so it cannot hold servers on nodes of
their own).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from cascadec.compiler import compile_source
from cascadec.contract.plan import Plan
from cascadec.render import render_stage
from runtime.serving import servers
from runtime.serving.client import ServerError
from runtime.state import RunDir

ROOT = Path(__file__).resolve().parents[2]
SPEC = '''cascade "nodes" {
  base = model("org/Tiny-1B")
  domain d { train = inline([{prompt = "1+1", answer = "2"}, {prompt = "1+2", answer = "3"},
                             {prompt = "1+3", answer = "4"}, {prompt = "1+4", answer = "5"}])  reward = exact() }
  stage a = sft(base) { steps = 1  lr = 1e-5 }
  stage m = distill(base) {
    steps = 1  lr = 1e-6  prompts_per_step = 4  rollouts_per_prompt = 2  teachers { default = a }
    resources { gpus = 4  nodes = 2  node_gpus = 4  gpu = h100
      rollout = vllm(nodes = 1, tensor_parallel = 2)
      teacher_servers = { a = vllm(nodes = 2, tensor_parallel = 2, startup = 60s) } }
  }
}
'''

FAKE_VLLM = '''
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
argv = sys.argv[1:]
with open(os.environ["FAKE_VLLM_LOG"], "a") as fh:
    fh.write(json.dumps({"argv": argv, "node": os.environ.get("SLURM_NODEID"),
                         "dev": os.environ.get("VLLM_SERVER_DEV_MODE")}) + "\\n")
if "--headless" in argv:
    time.sleep(3600)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer((argv[argv.index("--host") + 1], int(argv[argv.index("--port") + 1])), H).serve_forever()
'''

FAKE_SRUN = '''#!{python}
import signal, subprocess, sys
args = sys.argv[1:]
opts = {{}}
while args[0].startswith("--"):
    key, _, value = args.pop(0).partition("=")
    opts[key] = value
hosts = opts["--nodelist"].split(",")
assert len(hosts) == int(opts["--nodes"]) == int(opts["--ntasks"]), opts
procs = [subprocess.Popen(args, env={{**__import__("os").environ, "SLURM_NODEID": str(i), "SLURMD_NODENAME": h}})
         for i, h in enumerate(hosts)]
for signum in (signal.SIGUSR1, signal.SIGTERM):
    signal.signal(signum, lambda n, _f: [p.send_signal(n) for p in procs])
sys.exit(max(p.wait() for p in procs))
'''

PROBE = '''
import json, os, urllib.request
urls = json.loads(os.environ["CASCADEC_SERVER_URLS"])
ok = {k: urllib.request.urlopen(u + "/health", timeout=5).status for k, u in urls.items()}
open(os.environ["PROBE_OUT"], "w").write(json.dumps({"urls": urls, "health": ok}))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _plan() -> Plan:
    result = compile_source(SPEC, "nodes.cascade")
    assert result.plan is not None, [str(d) for d in result.diagnostics]
    assert not result.diagnostics
    return result.plan


def test_plan_places_the_servers_on_nodes_of_their_own() -> None:
    r = _plan().stage("m").resources
    assert [(k, s.nodes) for k, s in r.node_servers()] == [("rollout-server", 1), ("a", 2)]
    assert sum(s.nodes for _, s in r.node_servers()) == 3 and r.served_gpus() == 0
    assert r.server_gpus(r.teacher_servers["a"]) == 4  # a whole node by default


def test_sbatch_allocates_training_and_server_nodes() -> None:
    plan = _plan()
    files = render_stage(plan, plan.stage("m"))
    sbatch, launch = files["sbatch.sh"], files["launch.sh"]
    assert "#SBATCH --nodes=5\n" in sbatch and "#SBATCH --gpus-per-node=4\n" in sbatch
    assert 'training_hosts="$(IFS=,; echo "${hosts[*]:0:2}")"' in sbatch
    assert 'server_hosts="$(IFS=,; echo "${hosts[*]:2:3}")"' in sbatch
    assert '"--nodelist=$training_hosts"' in sbatch and "-m runtime.serving.nodes up" in sbatch
    assert "runtime.serving.servers" not in launch  # no server starts beside the training ranks


def test_sbatch_dry_run_shows_the_split(tmp_path: Path) -> None:
    from cascadec.render import render_plan

    target = render_plan(_plan(), tmp_path)
    out = subprocess.run(["bash", str(target / "stages/m/sbatch.sh"), "--dry-run"], capture_output=True, text=True,
                         env={**os.environ, "CASCADEC_PYTHON": "python3"}, check=True).stdout
    assert "--hosts=server-node-1,server-node-2,server-node-3 -- python3 -m runtime.slurm.job" in out
    assert "--nodelist=training-node-1,training-node-2" in out
    assert "--rdzv-endpoint training-node-1:29500" in out


def test_a_local_run_refuses_servers_on_nodes_of_their_own(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(servers.URLS_ENV, raising=False)
    plan = _plan()
    with pytest.raises(ServerError, match="--launcher slurm"):
        with servers.started(plan, RunDir(tmp_path), plan.stage("m")):
            pass


def test_up_starts_each_server_on_its_nodes_and_passes_the_urls(tmp_path: Path) -> None:
    data = json.loads(_plan().to_json())
    res = data["stages"][1]["resources"]
    res["rollout"]["port"], res["teacher_servers"]["a"]["port"] = _free_port(), _free_port()
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(json.dumps(data))
    fake = tmp_path / "fake" / "vllm" / "entrypoints" / "openai"
    fake.mkdir(parents=True)
    for d in (fake, fake.parent, fake.parent.parent):
        (d / "__init__.py").write_text("")
    (fake / "api_server.py").write_text(FAKE_VLLM)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text(FAKE_SRUN.format(python=sys.executable))
    (bindir / "srun").chmod(0o755)
    (tmp_path / "probe.py").write_text(textwrap.dedent(PROBE))
    log, out = tmp_path / "vllm.jsonl", tmp_path / "probe.json"
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "CASCADEC_VLLM_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(ROOT)]), "FAKE_VLLM_LOG": str(log),
           "PROBE_OUT": str(out), "CASCADEC_PYTHON": sys.executable}
    hosts = "127.0.0.2,127.0.0.3,127.0.0.4"
    proc = subprocess.run([sys.executable, "-m", "runtime.serving.nodes", "up", "--plan", str(plan_json), "--stage",
                           "m", "--run-dir", str(tmp_path / "run"), f"--hosts={hosts}", "--", sys.executable,
                           str(tmp_path / "probe.py")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(out.read_text())
    assert probe["urls"] == {"rollout-server": f"http://127.0.0.2:{res['rollout']['port']}",
                             "a": f"http://127.0.0.3:{res['teacher_servers']['a']['port']}"}
    assert probe["health"] == {"rollout-server": 200, "a": 200}
    started = [json.loads(line) for line in log.read_text().splitlines()]
    rollout = next(s for s in started if "policy" in s["argv"])
    assert rollout["dev"] == "1" and rollout["argv"][rollout["argv"].index("--host") + 1] == "0.0.0.0"
    # one node of 4 GPUs at tensor parallel 2: two replicas behind its own API server
    assert "--data-parallel-size 2" in " ".join(rollout["argv"]) and "--headless" not in rollout["argv"]
    teacher = sorted((s for s in started if "a" in s["argv"]), key=lambda s: s["node"])
    assert [t["node"] for t in teacher] == ["0", "1"]
    head, other = (" ".join(t["argv"]) for t in teacher)
    assert "--data-parallel-size 4 --data-parallel-size-local 2 --data-parallel-address 127.0.0.3" in head
    assert "--headless" not in head
    assert "--headless --data-parallel-start-rank 2" in other
    for url in probe["urls"].values():  # stopped when the job ended
        with pytest.raises(OSError):
            urllib.request.urlopen(url + "/health", timeout=2)
