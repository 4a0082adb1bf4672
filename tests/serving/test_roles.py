"""GPU roles in `resources` (issue 17): the C2 spec's served teachers, the memory-share check, and what the
served roles put into the plan."""

from __future__ import annotations

from pathlib import Path

from cascadec.checks.memory_plan import stage_estimate
from cascadec.checks.memory import memory_lower_bound
from cascadec.compiler import compile_file, compile_source
from cascadec.memory_estimate import GPU_MEMORY_MIB, MIB

ROOT = Path(__file__).resolve().parents[2]

SPEC = '''cascade "roles" {{
  base = model("org/Big-30B")
  domain d {{ train = inline([{{prompt = "1+1", answer = "2"}}, {{prompt = "1+2", answer = "3"}},
                              {{prompt = "1+3", answer = "4"}}, {{prompt = "1+4", answer = "5"}},
                              {{prompt = "1+5", answer = "6"}}, {{prompt = "1+6", answer = "7"}},
                              {{prompt = "1+7", answer = "8"}}, {{prompt = "1+8", answer = "9"}}])
             reward = exact() }}
  stage a = sft(base) {{ steps = 1  lr = 1e-5 }}
  stage m = distill(a) {{
    steps = 1  lr = 1e-6  prompts_per_step = 8  rollouts_per_prompt = 2  teachers {{ default = a  d = base }}
    resources {{ {resources} }}
  }}
}}
'''


def _codes(resources: str) -> list[tuple[str, str]]:
    result = compile_source(SPEC.format(resources=resources), "roles.cascade")
    return [(d.code, d.message) for d in result.diagnostics]


def test_c2_serves_its_three_teachers_and_fits_an_h100() -> None:
    result = compile_file(ROOT / "specs/nemotron-cascade-2.cascade")
    # its data is not shipped (one CAS320 warning for the folder); nothing about its servers or memory
    assert result.plan is not None and [d.code for d in result.diagnostics] == ["CAS320"]
    mopd = result.plan.stage("mopd")
    r = mopd.resources
    assert set(r.teacher_servers) == {"sft", "rlhf_side", "multi_rl"}
    assert r.nproc_per_node + r.served_gpus() == r.node_gpus == 8
    assert len({s.port for s in r.teacher_servers.values()}) == 3
    card = GPU_MEMORY_MIB["h100"] * MIB
    bound = memory_lower_bound(result.plan.base, mopd)
    assert bound is not None and bound + r.rollout.memory * card <= card  # training + colocated vLLM share
    # served: the training ranks hold none of the three 30B teachers (168 GiB when loaded on every rank)
    assert bound < 20 * 1024**3


def test_teacher_share_that_cannot_hold_the_model() -> None:
    diags = _codes("gpus = 1  node_gpus = 2  gpu = h100  teacher_servers = { a = vllm(gpus = 1, memory = 0.5) }")
    assert [c for c, _ in diags] == ["CAS417"]
    assert "more than its memory share (0.5 x 79.6 GiB = 39.8 GiB)" in diags[0][1]
    assert _codes("gpus = 1  node_gpus = 3  gpu = h100  teacher_servers = { a = vllm(gpus = 2, tensor_parallel = 2, "
                  "memory = 0.5), base = endpoint(\"http://127.0.0.1:9\", model = \"b\") }") == []


def test_colocated_share_that_leaves_training_too_little() -> None:
    diags = _codes("gpu = h100  engine = vllm  rollout = vllm(memory = 0.9)  "
                   "teacher_servers = { a = endpoint(\"http://h:1\", model = \"a\"), base = endpoint(\"http://h:2\", "
                   "model = \"b\") }")
    assert [c for c, _ in diags] == ["CAS417"]
    assert "colocated rollout engine reserves 0.9" in diags[0][1]


def test_served_teachers_leave_the_training_ranks() -> None:
    local = compile_source(SPEC.format(resources="gpu = h100"), "r.cascade").plan
    served = compile_source(SPEC.format(resources="gpus = 1  node_gpus = 3  gpu = h100  teacher_servers = { "
                                        "a = vllm(gpus = 1), base = vllm(gpus = 1) }"), "r.cascade").plan
    assert local is not None and served is not None
    two_teachers = 2 * 2 * 30e9
    assert memory_lower_bound(local.base, local.stage("m")) - memory_lower_bound(served.base, served.stage("m")) \
        == two_teachers
    assert stage_estimate(served.base, served.stage("m")) is None  # shape unknown: the lower bound is all we know
    ports = {n: s.port for n, s in served.stage("m").resources.teacher_servers.items()}
    assert ports == {"a": 8100, "base": 8101}


def test_every_server_argument_reaches_the_plan() -> None:
    plan = compile_source(SPEC.format(resources="teacher_servers = { a = endpoint(\"http://h:8000/\", model = \"m\", "
                                      "timeout = 2min, retries = 5, concurrency = 3), base = vllm(gpus = 0, "
                                      "memory = 0.5, startup = 90s) }  node_gpus = 1"), "r.cascade").plan
    assert plan is not None
    a, base = (plan.stage("m").resources.teacher_servers[n] for n in ("a", "base"))
    assert (a.url, a.model, a.timeout_s, a.retries, a.concurrency) == ("http://h:8000", "m", 120.0, 5, 3)
    assert (base.memory, base.startup_s, base.kind) == (0.5, 90.0, "vllm")


def test_unknown_server_argument_is_located() -> None:
    diags = _codes("teacher_servers = { a = vllm(gpu = 1) }")
    assert diags[0][0] == "CAS301" and "`gpu`" in diags[0][1]


def test_a_rollout_server_leaves_the_training_ranks_and_is_the_stages_engine() -> None:
    from cascadec.contract.kinds import ENGINES, load
    from runtime.rollout import server_engine

    shaped = SPEC.replace('model("org/Big-30B")', 'model(packaged("smollm2-135m-instruct"))')
    local = compile_source(shaped.format(resources="gpu = h100  engine = vllm"), "r.cascade").plan
    served = compile_source(shaped.format(resources="gpu = h100  engine = vllm  node_gpus = 8  rollout = vllm("
                                          "gpus = 4, tensor_parallel = 2, memory = 0.6, startup = 5min, timeout = 90s, "
                                          "retries = 1, concurrency = 32)"), "r.cascade").plan
    assert local is not None and served is not None
    r = served.stage("m").resources
    assert (r.rollout.gpus, r.rollout.tensor_parallel, r.rollout.memory, r.rollout.startup_s, r.rollout.timeout_s,
            r.rollout.retries, r.rollout.concurrency, r.rollout.port) == (4, 2, 0.6, 300.0, 90.0, 1, 32, 8099)
    before, after = (stage_estimate(p.base, p.stage("m")) for p in (local, served))
    assert before is not None and after is not None and before.kv_cache > 0 and after.kv_cache == 0
    assert after.total == before.total - before.kv_cache
    assert r.rollout_engine() == "vllm_server" and local.stage("m").resources.rollout_engine() == "vllm"
    assert load(ENGINES[r.rollout_engine()].impl) is server_engine
    endpoint = compile_source(SPEC.format(resources='rollout = endpoint("http://h:9/", model = "p")'), "r.cascade")
    assert endpoint.plan is not None and endpoint.plan.stage("m").resources.rollout_engine() == "vllm_server"


def test_share_must_hold_one_sequences_kv_cache_besides_the_weights() -> None:
    spec = (ROOT / "tests/golden/invalid/served_teacher_kv_cache.cascade").read_text()
    refused = compile_source(spec, "kv.cascade")
    assert [d.code for d in refused.diagnostics if d.severity == "error"] == ["CAS417"]
    assert "0.70 GiB of KV cache for one 32768-token sequence" in refused.diagnostics[-1].message
    # 0.2 x 8 GiB = 1.6 GiB holds 0.25 GiB of weights + 0.70 GiB of KV cache
    fits = compile_source(spec.replace("memory = 0.1", "memory = 0.2"), "kv.cascade")
    assert "CAS417" not in [d.code for d in fits.diagnostics]
