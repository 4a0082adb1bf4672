"""The rollout-server engine (`runtime.rollout.server`) against a small fake of vLLM's HTTP API: how requests are
shaped, the order of a weight update, the served-version check, the server checks at construction. What needs a
real model server (log-probs equal to the local policy's, a reload that changes the outputs, a killed server
during `cascadec run`) is in test_vllm_rollout.py. Also here: an unreachable rollout endpoint stops `cascadec run`
before any step, and a rollout server that cannot start is the stage's error, not a crash."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cascadec.compiler import compile_source
from cascadec.contract.plan import ModelRef
from runtime.models import load_model
from runtime.rollout.server import RELOAD, VLLM_RELOAD, Needs, Publisher, ServerRolloutEngine
from runtime.serving import servers
from runtime.serving.client import Endpoint, ServerError
from runtime.state import RunDir

TINY = ModelRef(kind="tiny", name="llama", config={"hidden_size": 32, "intermediate_size": 64,
                                                   "num_hidden_layers": 1, "num_attention_heads": 2,
                                                   "num_key_value_heads": 1})
EXTENSION_CONFIG = {"model_config": {"logprobs_mode": "processed_logprobs", "max_model_len": 4096},
                    "parallel_config": {"worker_extension_cls": servers.EXTENSION}, "device_config": {"device": "cpu"}}


class FakeVLLM:
    """What the engine uses of vLLM's API, recording every call (path, body) in order. Completions are
    ``[10 + i, 11 + i, ...]`` for the i-th copy, ``max_tokens`` long, log-prob ``-0.5`` each."""

    def __init__(self, tokenizer: Any, config: dict[str, Any] | None = None, dev_mode: bool = True) -> None:
        self.tokenizer, self.config, self.dev_mode = tokenizer, config or EXTENSION_CONFIG, dev_mode
        self.calls: list[tuple[str, Any]] = []
        self.version = "default"
        self.lock = threading.Lock()

    def answer(self, path: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.calls.append((path, body))
        route = path.split("?")[0]
        if route == "/server_info":
            return (200, {"vllm_config": self.config}) if self.dev_mode else (404, {"detail": "Not Found"})
        if route == "/tokenize":
            return 200, {"tokens": self.tokenizer.encode(body["prompt"], add_special_tokens=False)}
        if route == "/detokenize":
            return 200, {"prompt": self.tokenizer.decode(body["tokens"])}
        if route == "/weight_info":
            return 200, {"weight_version": self.version}
        if route == "/update_weight_version":
            self.version = body["new_version"]
            return 200, {"success": True}
        if route == "/reset_prefix_cache":
            return 200, {"success": True}
        if route in ("/pause", "/resume", "/collective_rpc"):
            return 200, {}
        if route == "/v1/completions":
            copies = len(body["prompt"]) * body["n"]
            return 200, {"choices": [{"index": k, "token_ids": list(range(10 + k, 10 + k + body["max_tokens"])),
                                      "logprobs": {"token_logprobs": [-0.5] * body["max_tokens"]},
                                      "finish_reason": "length"} for k in reversed(range(copies))]}
        return 404, {"detail": "Not Found"}

    def paths(self, *names: str) -> list[str]:
        return [p for p, _ in self.calls if p.split("?")[0] in names]


@pytest.fixture
def tokenizer() -> Any:
    return load_model(TINY, seed=0)[1]


def _serve(fake: FakeVLLM) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body: Any) -> None:
            status, data = fake.answer(self.path, body)
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._reply(None)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            self._reply(json.loads(self.rfile.read(length) or b"null"))

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake(tokenizer: Any) -> Iterator[tuple[FakeVLLM, str]]:
    fake = FakeVLLM(tokenizer)
    for url in _serve(fake):
        yield fake, url


class Saves:
    """A `Publisher.save` that records its calls (the real one writes a checkpoint, runtime.loop.save_final)."""

    def __init__(self, path: Path) -> None:
        self.path, self.models = path, []

    def __call__(self, model: Any) -> Path:
        self.models.append(model)
        return self.path


def _engine(url: str, tokenizer: Any, saves: Saves, *, reloads: bool = True, needs: Needs | None = None,
            concurrency: int = 4) -> ServerRolloutEngine:
    ep = Endpoint(url=url, model="policy", name="policy", role="rollout", timeout_s=5, retries=0,
                  concurrency=concurrency)
    return ServerRolloutEngine(ep, tokenizer, "the-policy", Publisher(saves, reloads, lambda: None),
                               needs or Needs(processed_logprobs=True, max_len=512, tied=True))


def test_requests_carry_token_ids_sampling_settings_and_a_seed_per_prompt(fake, tokenizer, tmp_path: Path) -> None:
    server, url = fake
    engine = _engine(url, tokenizer, Saves(tmp_path))
    out = engine.generate(["1+1=", "2+2=", "3+3="], n=3, max_new_tokens=4, temperature=0.7, top_p=0.9, top_k=0,
                          seed=5)
    bodies = [b for p, b in server.calls if p == "/v1/completions"]
    assert len(bodies) == 3  # one request per prompt
    prompts = {tuple(b["prompt"][0]): b for b in bodies}
    for text in ("1+1=", "2+2=", "3+3="):
        body = prompts[tuple(tokenizer.encode(text, add_special_tokens=False))]
        assert len(body["prompt"]) == 1 and body["n"] == 3 and body["max_tokens"] == 4
        assert body["temperature"] == 0.7 and body["top_p"] == 0.9 and body["top_k"] == -1
        assert body["logprobs"] == 0 and body["return_token_ids"] is True
    assert len({b["seed"] for b in bodies}) == 3
    # rows grouped per prompt, in each prompt's choice order (the fake answers them reversed)
    assert out.prompt_ids == [tokenizer.encode(t, add_special_tokens=False) for t in ("1+1=", "2+2=", "3+3=")
                              for _ in range(3)]
    assert out.completion_ids[:3] == [[10, 11, 12, 13], [11, 12, 13, 14], [12, 13, 14, 15]]
    assert out.completion_logprobs[0] == [-0.5] * 4 and all(out.truncated)
    again = _engine(url, tokenizer, Saves(tmp_path), concurrency=1)
    same = again.generate(["1+1=", "2+2=", "3+3="], n=3, max_new_tokens=4, temperature=0.7, top_p=0.9, top_k=0,
                          seed=5)
    # each prompt keeps its seed however the requests are sent (here one at a time, in order)
    later = [b for p, b in server.calls if p == "/v1/completions"][3:]
    assert {tuple(b["prompt"][0]): b["seed"] for b in later} == {k: b["seed"] for k, b in prompts.items()}
    assert same.completion_ids == out.completion_ids


def test_greedy_sends_n_copies_of_the_prompt(fake, tokenizer, tmp_path: Path) -> None:
    server, url = fake
    out = _engine(url, tokenizer, Saves(tmp_path)).generate(["1+1="], n=2, max_new_tokens=3, temperature=0.0,
                                                           top_p=1.0, top_k=5, seed=0)
    (body,) = [b for p, b in server.calls if p == "/v1/completions"]
    assert body["n"] == 1 and len(body["prompt"]) == 2 and body["top_k"] == 5 and len(out) == 2


def test_weights_are_published_before_the_first_rollout_and_after_each_sync(fake, tokenizer, tmp_path: Path) -> None:
    server, url = fake
    saves = Saves(tmp_path / "rollout_weights")
    engine = _engine(url, tokenizer, saves)
    assert saves.models == [] and server.paths("/collective_rpc") == []  # nothing before a rollout is asked for
    engine.generate(["1+1="], n=1, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0, seed=0)
    update = ["/pause?mode=wait", "/collective_rpc", "/reset_prefix_cache", "/update_weight_version", "/resume"]
    assert server.paths(*{p.split("?")[0] for p in update}) == update
    rpc = next(b for p, b in server.calls if p == "/collective_rpc")
    assert rpc["method"] == RELOAD and rpc["kwargs"] == {"weights_path": str(tmp_path / "rollout_weights")}
    first = engine.version
    assert first == server.version != "default" and engine.metrics()["weight_version"] == 1.0
    engine.generate(["1+1="], n=1, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0, seed=1)
    assert saves.models == ["the-policy"]  # no step in between: nothing published again
    engine.sync_weights("stepped")
    engine.generate(["1+1="], n=1, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0, seed=2)
    assert saves.models == ["the-policy", "stepped"] and engine.version not in (first, "default")
    assert len(server.paths("/collective_rpc")) == 2 and engine.metrics()["weight_version"] == 2.0


def test_a_rank_that_does_not_reload_waits_and_reads_the_version(fake, tokenizer, tmp_path: Path) -> None:
    server, url = fake
    server.version = "3-abc"  # set by the reloading rank
    saves = Saves(tmp_path)
    engine = _engine(url, tokenizer, saves, reloads=False)
    engine.generate(["1+1="], n=1, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0, seed=0)
    assert saves.models == ["the-policy"] and server.paths("/collective_rpc", "/pause") == []
    assert engine.version == "3-abc"


def test_a_server_that_lost_the_weights_gets_them_again(fake, tokenizer, tmp_path: Path) -> None:
    server, url = fake
    saves = Saves(tmp_path)
    engine = _engine(url, tokenizer, saves)
    engine.generate(["1+1="], n=1, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0, seed=0)
    server.version = "default"  # restarted: it serves the base model again
    engine.generate(["1+1="], n=1, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0, seed=1)
    assert saves.models == ["the-policy"]  # the copy on disk is reloaded, not written again
    assert len(server.paths("/collective_rpc")) == 2 and server.version == engine.version


def test_weights_that_change_during_every_rollout_stop_the_stage(fake, tokenizer, tmp_path: Path) -> None:
    server, url = fake
    engine = _engine(url, tokenizer, Saves(tmp_path))
    engine.generate(["1+1="], n=1, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0, seed=0)
    answer = server.answer

    def meddling(path: str, body: Any) -> tuple[int, Any]:
        if path == "/v1/completions":
            server.version = "someone-else"
        return answer(path, body)

    server.answer = meddling
    with pytest.raises(ServerError, match="changed its weights during two rollouts in a row"):
        engine.generate(["1+1="], n=1, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0, seed=1)


@pytest.mark.parametrize(("config", "needs", "message"), [
    ({**EXTENSION_CONFIG, "model_config": {"logprobs_mode": "raw_logprobs", "max_model_len": 4096}},
     Needs(True, 512, False), "(?s)returns `raw_logprobs` log-probs.*--logprobs-mode processed_logprobs"),
    ({**EXTENSION_CONFIG, "model_config": {"logprobs_mode": "processed_logprobs", "max_model_len": 256}},
     Needs(False, 512, False), "(?s)holds 256 tokens per sequence, and this stage needs 512.*--max-model-len 512"),
    ({**EXTENSION_CONFIG, "parallel_config": {}}, Needs(False, 512, True),
     "(?s)runs on CPUs without cascadec's worker extension.*--worker-extension-cls cascadec_weight_sync.WeightSync"),
])
def test_an_unfit_server_is_refused_before_any_rollout(tokenizer, tmp_path: Path, config, needs, message) -> None:
    for url in _serve(FakeVLLM(tokenizer, config)):
        with pytest.raises(ServerError, match=message):
            _engine(url, tokenizer, Saves(tmp_path), needs=needs)


def test_raw_logprobs_at_temperature_one_and_vllms_own_reload_on_gpus(tokenizer, tmp_path: Path) -> None:
    config = {"model_config": {"logprobs_mode": "raw_logprobs", "max_model_len": 4096}, "parallel_config": {},
              "device_config": {"device": "cuda"}}
    fake = FakeVLLM(tokenizer, config)
    for url in _serve(fake):
        engine = _engine(url, tokenizer, Saves(tmp_path), needs=Needs(False, 512, True))
        engine.generate(["1+1="], n=1, max_new_tokens=2, temperature=1.0, top_p=1.0, top_k=0, seed=0)
    assert next(b for p, b in fake.calls if p == "/collective_rpc")["method"] == VLLM_RELOAD


def test_a_server_without_development_endpoints_is_refused(tokenizer, tmp_path: Path) -> None:
    for url in _serve(FakeVLLM(tokenizer, dev_mode=False)):
        with pytest.raises(ServerError, match=r"(?s)has no /server_info.*VLLM_SERVER_DEV_MODE=1"):
            _engine(url, tokenizer, Saves(tmp_path))


def test_an_unreachable_endpoint_is_a_clear_error(tokenizer, tmp_path: Path) -> None:
    port = _free_port()
    with pytest.raises(ServerError, match=rf"rollout server `policy` at http://127\.0\.0\.1:{port} did not answer "
                                          r"/server_info\?config_format=json after 1 attempt\(s\)[^\n]*\nhelp: start the server"):
        _engine(f"http://127.0.0.1:{port}", tokenizer, Saves(tmp_path))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SPEC = '''cascade "rollouts" {{
  base = model(tiny(llama, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1, num_attention_heads = 2,
                    num_key_value_heads = 1))
  domain d {{ train = inline([{{prompt = "1+1=", answer = "2"}}, {{prompt = "2+1=", answer = "3"}}])  reward = exact() }}
  stage g = grpo(base) on d {{
    steps = 2  lr = 1e-4  prompts_per_step = 2  rollouts_per_prompt = 2  max_response = 3
    resources {{ device = cpu  precision = fp32  {rollout} }}
  }}
}}
'''


def _plan(rollout: str):
    result = compile_source(SPEC.format(rollout=rollout), "rollouts.cascade")
    assert result.plan is not None, [d.message for d in result.diagnostics]
    return result.plan


def test_run_with_an_unreachable_rollout_endpoint_stops_before_any_step(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from cascadec.render import render_plan
    from runtime.orchestrator import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    port = _free_port()
    build = render_plan(_plan(f'rollout = endpoint("http://127.0.0.1:{port}", model = "policy", retries = 0)'),
                        tmp_path / "build")
    out = Console(file=io.StringIO(), width=400, color_system=None)
    assert run(build, tmp_path / "run", console=out) != 0
    text = out.file.getvalue()
    assert f"rollout server `policy` at http://127.0.0.1:{port} did not answer /server_info?config_format=json after 1 attempt(s)" in text
    assert "the run is resumable" in text
    assert not (tmp_path / "run" / "stages" / "g" / "metrics.jsonl").exists()  # no step ran


def test_a_rollout_server_that_cannot_start_is_the_stages_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'no module named vllm' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CASCADEC_VLLM_PYTHON", str(fake))
    plan = _plan("node_gpus = 2  rollout = vllm(gpus = 1)").model_copy(
        update={"base": ModelRef(kind="path", name=str(tmp_path))})
    rc, message = servers.served(plan, RunDir(tmp_path / "run"), plan.stage("g"), lambda: pytest.fail("no stage"))
    assert rc == 2 and message is not None
    assert message.startswith("stage `g`: rollout server `policy` exited with status 3") and "no module named" in message
    assert (tmp_path / "run" / "stages" / "g" / "servers" / "rollout-server.log").is_file()


def test_the_rollout_server_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADEC_VLLM_ARGS", "--enforce-eager --max-model-len 64")
    plan = _plan("node_gpus = 8  rollout = vllm(gpus = 4, tensor_parallel = 2, memory = 0.7)")
    stage = plan.stage("g")
    based = plan.model_copy(update={"base": ModelRef(kind="path", name="/models/base")})
    ((name, _, ep, cmd, env),) = servers._roles(based, RunDir(tmp_path), stage, rollout_only=True)
    assert name == "rollout-server" and ep.url == "http://127.0.0.1:8099" and ep.role == "rollout"
    assert cmd[cmd.index("--model") + 1] == "/models/base" and cmd[cmd.index("--served-model-name") + 1] == "policy"
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "2" and cmd[cmd.index("--data-parallel-size") + 1] == "2"
    assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.7"
    assert cmd[cmd.index("--logprobs-mode") + 1] == "processed_logprobs"
    assert cmd[cmd.index("--worker-extension-cls") + 1] == servers.EXTENSION
    # the stage's own length first, the site's arguments after it (vLLM keeps the last)
    assert cmd.index("--max-model-len") < len(cmd) - 2 and cmd[-2:] == ["--max-model-len", "64"]
    assert env["VLLM_SERVER_DEV_MODE"] == "1"
    assert env["PYTHONPATH"].split(":")[0] == str(servers.EXTENSION_DIR)
    assert (servers.EXTENSION_DIR / "cascadec_weight_sync.py").is_file()
