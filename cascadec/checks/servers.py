"""GPU roles of a stage (`resources { node_gpus, rollout, teacher_servers, tensor_parallel }`): the roles fit in a
node (CAS416), each served model fits in its memory share (CAS417), what the runtime cannot run is an error
(CAS418), and every served teacher is one of the stage's teachers (CAS419).

A served model's weights take ``w Ψ / tensor_parallel`` bytes on each of its GPUs (``w`` = 2 in bf16, 4 in fp32;
Ψ as in CAS409: teachers and the policy of this cascade share the base model's size), and vLLM needs room for
its KV cache on top, inside ``memory`` (its ``gpu_memory_utilization``) times the card's memory. A colocated
rollout engine (``rollout = vllm(memory = 0.3)``) takes its share of the training GPUs, so the training estimate
must fit in the rest: TRL's colocated default of 0.9 ran out of memory and was lowered to 0.3 for that reason.
A rollout server (``rollout = vllm(gpus = 2)``) holds the policy on its own GPUs, as a served teacher does.
"""

from __future__ import annotations

import math
from typing import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.checks.memory import memory_lower_bound, parameter_count
from cascadec.checks.memory_plan import VLLM_SHARE, model_shape, stage_estimate
from cascadec.codes import make
from cascadec.contract.kinds import STAGE_KINDS
from cascadec.contract.plan import ROLLOUT_SERVER_KEY, ModelRef, Plan, Resources, Server, Stage
from cascadec.contract.serving import max_model_len
from cascadec.diagnostics import Diagnostic, Span
from cascadec.memory_estimate import ModelShape, gpu_memory

_GIB = 1024**3


def _gib(n: float) -> str:
    return f"{n / _GIB:.1f} GiB" if n >= _GIB else f"{n / _GIB:.2f} GiB"


def _roles(r: Resources) -> list[str]:
    out = [f"{r.nproc_per_node} training rank(s)"]
    out += [f"teacher `{n}` on {s.gpus}" for n, s in r.teacher_servers.items()
            if s.kind == "vllm" and s.gpus and not s.nodes]
    if r.rollout is not None and r.rollout.kind == "vllm" and r.rollout.gpus and not r.rollout.nodes:
        out.append(f"the rollout server on {r.rollout.gpus}")
    return out


def _own_nodes(st: Stage, at: dict[str, Span]) -> Iterator[Diagnostic]:
    """A server on nodes of its own (`vllm(nodes = K)`) takes `gpus` of each of its nodes (all of `node_gpus`
    by default), as whole tensor-parallel groups: tensor parallelism across nodes needs Ray, which is not run."""
    r = st.resources
    for key, s in r.node_servers():
        what, span = ("the rollout server", at["rollout"]) if key == ROLLOUT_SERVER_KEY else \
            (f"teacher server `{key}`", at["teacher_servers"])
        gpus = r.server_gpus(s)
        if not gpus:
            yield make("CAS416", f"{what} of stage `{st.name}` takes {s.nodes} node(s) of its own, but neither "
                       "its `gpus` nor the stage's `node_gpus` says how many GPUs of each it uses", span,
                       label="GPUs per server node unknown",
                       help="add `node_gpus = 8` (the node's real count) to `resources`, or `gpus = N` to `vllm(...)`")
        elif r.node_gpus is not None and gpus > r.node_gpus:
            yield make("CAS416", f"{what} of stage `{st.name}` takes {gpus} GPUs of each of its nodes, more than "
                       f"`node_gpus = {r.node_gpus}`", span, label="more GPUs than a node has",
                       help=f"lower its `gpus` to at most {r.node_gpus}, or raise `nodes`")
        elif gpus % s.tensor_parallel:
            yield make("CAS416", f"{what} of stage `{st.name}` has {gpus} GPUs on each of its nodes, not a multiple "
                       f"of `tensor_parallel = {s.tensor_parallel}`", span, label="a replica cannot span nodes",
                       help="give `gpus` (per node) as a multiple of `tensor_parallel`; tensor parallelism stays "
                       "inside a node, replicas spread over the nodes")


def _node(st: Stage, span: Span) -> Iterator[Diagnostic]:
    r = st.resources
    served = r.served_gpus()
    if r.node_gpus is None:
        if served:
            yield make("CAS416", f"stage `{st.name}` places served roles on {served} GPU(s) but does not say how many "
                       "GPUs a node has", span, label="roles on their own GPUs", notes=(", ".join(_roles(r)),),
                       help=f"add `node_gpus = {r.nproc_per_node + served}` (or the node's real count) to `resources`")
        return
    if r.nproc_per_node + served > r.node_gpus:
        yield make("CAS416", f"stage `{st.name}` needs {r.nproc_per_node + served} GPUs per node "
                   f"({', '.join(_roles(r))} GPU(s)), more than `node_gpus = {r.node_gpus}`", span,
                   label="more GPUs than a node has",
                   help="lower `gpus` (training ranks) or a server's `gpus`, or serve a teacher from an `endpoint(...)`")


def _model_size(spec_base: ModelRef, checkpoints: dict[str, ModelRef], name: str) -> int | None:
    ref = checkpoints.get(name, spec_base)
    return parameter_count(ref.kind, ref.name)


def kv_cache_bytes(shape: ModelShape | None, tokens: int, width: int, tensor_parallel: int) -> float:
    """Bytes of KV cache per GPU for ``tokens`` tokens: keys and values of every layer, the KV heads split over
    ``tensor_parallel`` GPUs (a head is replicated when there are fewer heads than GPUs, as vLLM does); 0 when
    the model's shape is unknown."""
    if shape is None:
        return 0.0
    return 2 * shape.layers * math.ceil(shape.kv_heads / tensor_parallel) * shape.head_dim * width * tokens


def _fits(what: str, server: Server, params: int | None, width: int, limit: int | None, span: Span,
          kv: tuple[float, int] = (0.0, 0)) -> Iterator[Diagnostic]:
    """``kv``: the KV cache of one sequence of the stage's length (vLLM refuses to start without room for it:
    "max seq len is larger than the maximum number of tokens that can be stored in KV cache") and that length."""
    if params is None or limit is None:
        return
    weights = width * params / server.tensor_parallel
    share = server.memory * limit
    if weights + kv[0] < share:
        return
    cache = f" and {_gib(kv[0])} of KV cache for one {kv[1]}-token sequence" if kv[0] else ""
    yield make("CAS417", f"{what} needs {_gib(weights)} of weights{cache} per GPU, more than its memory share "
               f"({server.memory:g} x {_gib(limit)} = {_gib(share)})", span, label="cannot hold the model",
               notes=(f"{params / 1e9:.3g}B parameters in {width}-byte precision over `tensor_parallel = "
                      f"{server.tensor_parallel}`; vLLM needs room for the KV cache of at least one sequence of "
                      "the stage's `max_prompt` + `max_response` (and its evals' `max_tokens`) in the share",),
               help="raise `memory`, or `tensor_parallel` (with `gpus` a multiple of it), or shorten the sequences")


def _memory(st: Stage, plan: Plan, at: dict[str, Span]) -> Iterator[Diagnostic]:
    r = st.resources
    limit = gpu_memory(r.gpu, r.memory_per_gpu_bytes)
    width = 4 if r.precision == "fp32" else 2
    seq, base = max_model_len(plan, st), plan.base
    for name, server in r.teacher_servers.items():
        if server.kind == "vllm":
            kv = kv_cache_bytes(model_shape(plan.checkpoints.get(name, base)), seq, width, server.tensor_parallel)
            yield from _fits(f"teacher server `{name}` of stage `{st.name}`", server,
                             _model_size(base, plan.checkpoints, name), width, limit, at["teacher_servers"], (kv, seq))
    span = at["rollout"]
    served = r.rollout_server()
    if served is not None and served.kind == "vllm":
        kv = kv_cache_bytes(model_shape(base), seq, width, served.tensor_parallel)
        yield from _fits(f"the rollout server of stage `{st.name}`", served, parameter_count(base.kind, base.name),
                         width, limit, span, (kv, seq))
    # the colocated engine (`engine = vllm`) takes `rollout`'s share, or the runtime's default one
    rollout = r.rollout or Server(kind="vllm", memory=VLLM_SHARE)
    if r.engine != "vllm" or rollout.kind != "vllm" or served or not hasattr(st.params, "rollouts_per_prompt"):
        return
    yield from _fits(f"the colocated rollout engine of stage `{st.name}`", rollout,
                     parameter_count(base.kind, base.name), width, limit, span)
    est = stage_estimate(base, st)
    training = est.total - est.kv_cache if est is not None else memory_lower_bound(base, st)
    if training is None or limit is None:
        return
    if training + rollout.memory * limit > limit:
        yield make("CAS417", f"stage `{st.name}` trains in an estimated {_gib(training)} per GPU, and the colocated "
                   f"rollout engine reserves {rollout.memory:g} x {_gib(limit)}: more than the GPU has", span,
                   label="training and rollouts do not fit together",
                   help="lower the rollout engine's `memory` (TRL's colocated default is 0.3), or shard the "
                   "training states (`strategy = zero3`, `fsdp2`)")


def _unsupported(st: Stage, span: Span, at: dict[str, Span], own_rollout: bool) -> Iterator[Diagnostic]:
    """What the runtime cannot run; a cascade-wide colocated ``rollout`` share applies only to the stages
    whose engine is vLLM (as ``engine`` itself), so a mismatch is reported where a stage sets it."""
    r, p = st.resources, st.params
    if r.tensor_parallel > 1:
        yield make("CAS418", f"stage `{st.name}` asks for tensor-parallel training (`tensor_parallel = "
                   f"{r.tensor_parallel}`), which the runtime does not do", at.get("tensor_parallel", span),
                   label="training is data-parallel only",
                   help="remove `tensor_parallel` and shard with `strategy = zero3` or `fsdp2`; tensor parallelism "
                   "is for served roles: `vllm(gpus = 2, tensor_parallel = 2)`")
    yield from _rollout(st, span, at, own_rollout)
    if not r.teacher_servers:
        return
    if st.kind != "distill":
        yield make("CAS418", f"a `{st.kind}` stage cannot score with served teachers (stage `{st.name}`)",
                   at.get("teacher_servers", span), label="served teachers",
                   help="only `distill` stages read teachers from servers; load this stage's teachers locally")
    elif p.loss != "mopd":
        yield make("CAS418", f"stage `{st.name}` uses `loss = {p.loss}`, which needs the teachers' whole next-token "
                   "distributions, and a server returns the log-probs of the given tokens only",
                   at.get("teacher_servers", span), label="served teachers",
                   help="use `loss = mopd`, or load the teachers locally (remove `teacher_servers`)")
    elif p.teacher_temperature != 1.0:
        yield make("CAS418", f"stage `{st.name}` scores its teachers at `teacher_temperature = "
                   f"{p.teacher_temperature:g}`, and a server returns log-probs at temperature 1",
                   at.get("teacher_servers", span), label="served teachers",
                   help="use `teacher_temperature = 1.0`, or load the teachers locally")


# what the colocated engine (`rollout = vllm(memory = F)`) takes: only its memory share
_COLOCATED = Server(kind="vllm")


def _rollout(st: Stage, span: Span, at: dict[str, Span], own_rollout: bool) -> Iterator[Diagnostic]:
    r = st.resources
    rollout, where = r.rollout, at.get("rollout", span)
    if rollout is None:
        return
    if r.rollout_server() is not None:
        if r.engine == "hf" and "engine" in at:
            yield make("CAS418", f"stage `{st.name}` samples from a rollout server but sets `engine = hf`", at["engine"],
                       label="not the engine that rolls out", help="remove `engine = hf` (the server is the engine; "
                       "`engine = vllm` is allowed), or colocate the engine: `rollout = vllm(memory = 0.3)`")
        return
    ignored = [f"`{name} = {getattr(rollout, field):g}{unit}`" for name, field, unit in (
        ("tensor_parallel", "tensor_parallel", ""), ("startup", "startup_s", "s"), ("timeout", "timeout_s", "s"),
        ("retries", "retries", ""), ("concurrency", "concurrency", "")) if getattr(rollout, field) != getattr(_COLOCATED, field)]
    if ignored and own_rollout:
        yield make("CAS418", f"stage `{st.name}` gives the colocated rollout engine {', '.join(ignored)}, which only "
                   "a server takes", where, label="colocated: only `memory` applies",
                   help="remove it, or run the rollouts on a server: `rollout = vllm(gpus = 2, tensor_parallel = 2)`")
    elif r.engine != "vllm" and own_rollout and hasattr(st.params, "rollouts_per_prompt"):
        yield make("CAS418", f"stage `{st.name}` sets a vLLM rollout share but rolls out with `engine = "
                   f"{r.engine}`", where, label="no vLLM engine to give it to",
                   help="add `engine = vllm`, or remove `rollout`")


def _unknown_teachers(st: Stage, span: Span) -> Iterator[Diagnostic]:
    if not st.resources.teacher_servers or not STAGE_KINDS[st.kind].teachers:
        return
    known = st.teacher_stages()
    for name in st.resources.teacher_servers:
        if name not in known:
            shown = ", ".join(f"`{n}`" for n in sorted(known)) or "none"
            yield make("CAS419", f"`teacher_servers` of stage `{st.name}` serves `{name}`, which is not one of its "
                       f"teachers", span, label=f"`{name}` is not a teacher here",
                       help=f"serve one of the stage's teachers ({shown}), or remove `{name}`")


def check_servers(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    for i, (st, node) in enumerate(zip(ctx.spec.stages, ctx.view.stages)):
        at = {k: ctx.span_of(("stages", i, "resources", k), node.name.span)
              for k in ("node_gpus", "tensor_parallel", "rollout", "teacher_servers")}
        if ("stages", i, "resources", "engine") in ctx.spans:
            at["engine"] = ctx.span_of(("stages", i, "resources", "engine"), node.name.span)
        yield from _node(st, at["node_gpus"] if st.resources.node_gpus else node.name.span)
        yield from _own_nodes(st, at)
        own = at["rollout"].path == node.span.path and node.span.start <= at["rollout"].start < node.span.end
        yield from _unsupported(st, node.name.span, at, own)
        yield from _unknown_teachers(st, at["teacher_servers"])
        yield from _memory(st, ctx.spec, at)
