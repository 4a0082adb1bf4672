"""Name resolution: parents, `on` domains, teachers, `best(...)` and stop rules (CAS300 with a "did you
mean", CAS307 for evals), and domains without a reward that a GRPO stage or an eval needs (CAS306)."""

from __future__ import annotations

from typing import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.checks.graph import domains_of
from cascadec.checks.structure import meant_key
from cascadec.checkpoints import declared
from cascadec.codes import make
from cascadec.routes import teacher_routes
from cascadec.diagnostics import Diagnostic
from cascadec.contract.kinds import STAGE_KINDS, TRAIN_METRICS
from cascadec.contract.suggest import did_you_mean
from cascadec.model.keys import DOMAIN_KEYS


def _unknown(ident: ast.Ident, what: str, candidates: list[str]) -> Diagnostic:
    return make("CAS300", f"unknown {what} `{ident.name}`", ident.span, label=f"no {what} has this name",
                help=did_you_mean(ident.name, candidates, f"{what}s"))


def _eval_ref(ref: ast.Dotted, domains: dict[str, ast.Domain]) -> Iterator[Diagnostic]:
    """``domain.eval`` must name a declared eval of a declared domain."""
    domain = domains.get(ref.first.name)
    if domain is None:
        yield _unknown(ref.first, "domain", sorted(domains))
        return
    evals = [e.name.name for e in domain.evals]
    if ref.second.name not in evals:
        hint = did_you_mean(ref.second.name, evals, "evals") if evals else \
            f"declare one in domain `{domain.name.name}`: `eval {ref.second.name} = gym(...)`"
        yield make("CAS307", f"domain `{ref.first.name}` has no eval `{ref.second.name}`", ref.second.span,
                   label="unknown eval", secondary=((domain.name.span, "domain declared here"),), help=hint)


def _stage_ref(ident: ast.Ident, stages: dict[str, int], itself: str | None = None) -> Iterator[Diagnostic]:
    """``ident`` must name a stage, ``base`` or a named checkpoint; the stage ``itself`` (the one whose parent
    or teacher this is) is no candidate to suggest."""
    if ident.name != "base" and ident.name not in stages:
        yield _unknown(ident, "stage", [s for s in stages if s != itself] + ["base"])


def _teacher_refs(t: ast.Teachers, stages: dict[str, int], domains: dict[str, ast.Domain],
                  student: str) -> Iterator[Diagnostic]:
    by, routes = teacher_routes(t)
    if by is not None and not (isinstance(by.value, ast.Call) and by.value.func.name == "field"):
        yield make("CAS200", "`by` in `teachers` takes the data field to route by", by.value.span,
                   label="not `field(...)`", help='write `by = field("data_source")`')
    for a in routes:
        if a.key.name == "routes":
            yield make("CAS200", "`routes` takes a list of `when(\"value\", STAGE)`, each optionally with `weight = W`",
                       a.value.span,
                       label="not a list of `when(...)`",
                       help='write `routes = [when("openai/gsm8k", sft), when("apps", rl, weight = 0.5)]`')
            continue
        if by is None and a.key.name != "default" and a.key.name not in domains:
            yield _unknown(a.key, "domain", sorted(domains) + ["default"])
        v = a.value
        if isinstance(v, ast.Ident):
            yield from _stage_ref(v, stages, student)
        elif isinstance(v, ast.Call) and v.func.name == "best":
            if len(v.args) < 1 or v.by is None or v.kwargs:
                yield make("CAS200", "`best(...)` takes stage names and `by DOMAIN.EVAL`", v.span,
                           label="malformed `best`", help="write `best(sft, rl by math.gsm)`")
                continue
            for cand in v.args:
                if isinstance(cand, ast.Ident):
                    yield from _stage_ref(cand, stages, student)
                else:
                    yield make("CAS200", "a `best(...)` candidate must be a stage name", cand.span,
                               label="not a stage name", help="write `best(sft, rl by math.gsm)`")
            yield from _eval_ref(v.by, domains)
        elif isinstance(v, ast.Call):
            yield make("CAS300", f"unknown teacher function `{v.func.name}`", v.func.span,
                       label="not `best`", help="a teacher is a stage name or `best(STAGE, ... by DOMAIN.EVAL)`")
        else:
            yield make("CAS200", "a teacher must be a stage name or `best(...)`", v.span, label="not a teacher",
                       help="write `math = sft` or `math = best(sft, rl by math.gsm)`")


def _metric_ref(ref: ast.Dotted, kind: str) -> Iterator[Diagnostic]:
    """``train.<metric>`` must name a metric the stage kind's trainer logs."""
    entry = STAGE_KINDS.get(kind)
    known = list(entry.metrics) if entry else []
    if ref.second.name not in known:
        hint = did_you_mean(ref.second.name, known, "metrics")
        if ref.second.name == "clip_ratio" and "truncated_frac" in known:
            # the Cascade 1 paper's "clip ratio" is the share of responses cut at the length limit
            hint = "the share of responses cut at `max_response` is `truncated_frac`; the PPO clip share is `clip_frac`"
        yield make("CAS300", f"unknown training metric `{ref.second.name}` of a `{kind}` stage", ref.second.span,
                   label="not a logged metric", help=hint)


def _until_refs(u: ast.Until, domains: dict[str, ast.Domain], kind: str) -> Iterator[Diagnostic]:
    for c in u.conds:
        if isinstance(c, ast.Threshold) and c.ref.first.name == TRAIN_METRICS:
            yield from _metric_ref(c.ref, kind)
        elif isinstance(c, ast.Plateau) and c.ref.first.name == TRAIN_METRICS:
            yield make("CAS200", "`plateau(...)` reads an eval, not a training metric", c.ref.span,
                       label="a training metric", help=f"compare the metric with a number: "
                       f"`{TRAIN_METRICS}.{c.ref.second.name} >= VALUE`")
        elif isinstance(c, ast.StepsCond):
            if c.key.name != "steps":
                yield make("CAS300", f"unknown name `{c.key.name}` in a stop rule", c.key.span,
                           label="not `steps` or `DOMAIN.EVAL`",
                           help="write `steps >= N` or `DOMAIN.EVAL >= VALUE`")
        elif isinstance(c, ast.Plateau):
            if c.func.name != "plateau":
                yield make("CAS300", f"unknown stop rule `{c.func.name}(...)`", c.func.span,
                           label="not a stop rule", help=did_you_mean(c.func.name, ["plateau"], "stop rules"))
            yield from _eval_ref(c.ref, domains)
        else:
            yield from _eval_ref(c.ref, domains)
            t = c.teacher
            if t is not None:
                if t.func.name != "teacher":
                    yield make("CAS300", f"unknown function `{t.func.name}(...)` in a stop rule", t.func.span,
                               label="not `teacher`", help="write `teacher(DOMAIN).EVAL`")
                yield from _eval_ref(ast.Dotted(t.domain, t.eval, t.span), domains)


def check_names(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    # a dict: membership tests stay O(1) on long chains; a named checkpoint stands where a stage may
    stages = {**ctx.stage_index(), **{n: -1 for n in declared(ctx.view)}}
    domains = ctx.domains()
    for st in ctx.view.stages:
        yield from _stage_ref(st.parent, stages, st.name.name)
        on = st.on
        refs = [on] if isinstance(on, ast.Ident) else list(on.items) if isinstance(on, ast.ListV) else []
        if isinstance(on, ast.ListV) and not on.items:
            yield make("CAS200", f"stage `{st.name.name}` trains on an empty domain list", on.span,
                       label="no domains", help="name at least one domain, e.g. `on [math]`, or drop `on` to use all")
        if isinstance(on, ast.ListV) and 0 < sum(isinstance(r, ast.Pair) for r in on.items) < len(on.items):
            plain = next(r for r in on.items if not isinstance(r, ast.Pair))
            yield make("CAS200", f"stage `{st.name.name}` mixes weighted and unweighted domains in `on`", plain.span,
                       label="no weight", help="give every domain a weight (`on [math: 0.7, code: 0.3]`) or none "
                       "(equal weights)")
        seen: dict[str, ast.Ident] = {}
        for r in refs:
            ident = r.key if isinstance(r, ast.Pair) else r
            if isinstance(ident, ast.Ident) and ident.name in seen:
                yield make("CAS303", f"domain `{ident.name}` is listed twice in `on`", ident.span,
                           label="listed again here", secondary=((seen[ident.name].span, "first listed here"),),
                           help="list each domain once; give it one weight")
            elif isinstance(ident, ast.Ident):
                seen[ident.name] = ident
        for r in refs:
            ident = r.key if isinstance(r, ast.Pair) else r
            if not isinstance(ident, ast.Ident):
                yield make("CAS200", "`on` takes domain names, optionally with weights", r.span,
                           label="not a domain name", help="write `on [math: 0.7, code: 0.3]`")
            elif ident.name not in domains:
                yield _unknown(ident, "domain", sorted(domains))
        for item in st.items:
            if isinstance(item, ast.Assign) and item.key.name == "keep" and isinstance(item.value, ast.Call) \
                    and item.value.by is not None:
                yield from _eval_ref(item.value.by, domains)
            if isinstance(item, ast.Teachers):
                yield from _teacher_refs(item, stages, domains, st.name.name)
            elif isinstance(item, ast.Until):
                yield from _until_refs(item, domains, st.kind.name)
    if ctx.view.stages and not domains and any(st.on is None for st in ctx.view.stages):
        first = next(st for st in ctx.view.stages if st.on is None)
        yield make("CAS300", "the cascade declares no domain for this stage to train on", first.name.span,
                   label="no domains", help="declare `domain NAME { train = ...  reward = ... }`")


def check_rewards(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS306: a domain without a reward that a stage scores rollouts of (GRPO) or that has evals (each eval
    scores completions with the domain's reward). A domain only distilled or fine-tuned on needs none, and
    one with a misspelt `reward` key (`rewad = gym()`) has its CAS301 say what is missing."""
    for d in ctx.view.domains:
        if any(a.key.name == "reward" or meant_key(a.key.name, DOMAIN_KEYS) == "reward" for a in d.assigns):
            continue
        name = d.name.name
        users = [(st.name.span, f"stage `{st.name.name}`", f"{st.kind.name} scores its rollouts with the reward")
                 for st in ctx.view.stages if st.kind.name in STAGE_KINDS and STAGE_KINDS[st.kind.name].rewarded
                 and name in domains_of(st, ctx.view)]
        users += [(e.name.span, f"eval `{e.name.name}`", "scores completions with the domain's reward")
                  for e in d.evals]
        if users:
            yield make("CAS306", f"domain `{name}` has no reward, which {users[0][1]} needs", d.name.span,
                       label="no `reward = ...`", secondary=tuple((span, label) for span, _, label in users),
                       help="add e.g. `reward = math_verify(answer = field(\"answer\"))` to the domain")
