"""DistillTrainer on a real StageContext: routing, teacher loading, metrics, and on-policy learning."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cascadec.contract.plan import (
    DataSource,
    DistillParams,
    Domain,
    ModelRef,
    Optim,
    Plan,
    Resources,
    RewardSpec,
    Schedule,
    SFTParams,
    Stage,
    TeacherRef,
)
from runtime.chat import render_sft
from runtime.data import Sample
from runtime.entry import build_context
from runtime.models import load_model, save_checkpoint
from runtime.rollout.hf import HFRolloutEngine
from runtime.stages import TRAINERS
from runtime.stages.distill import (
    DistillSetupError,
    DistillTrainer,
    place_rows,
    plan_placement,
)
from runtime.state import RunDir
from runtime.teachers import TeacherError

torch.set_num_threads(2)

TINY = ModelRef(kind="tiny", name="llama", config={"hidden_size": 32, "intermediate_size": 64,
                                                    "num_hidden_layers": 1, "num_attention_heads": 2,
                                                    "num_key_value_heads": 1})
TARGETS = {"a": "y", "b": "n"}  # what each domain's teacher answers, whatever the prompt


def _samples(domain: str, n: int, offset: int = 0) -> list[Sample]:
    """``n`` prompts of ``domain`` whose numbers have 1 to 3 digits (varied lengths, so that a tiny model
    learns the answer rather than the position it starts at)."""
    numbers = [(offset + k) * 379 % 1000 // 10 ** (k % 3) for k in range(n)]
    return [Sample(id=f"{domain}/{offset + k}", domain=domain, prompt=f"{domain.upper()}: {x}?")
            for k, x in enumerate(numbers)]


def make_plan(teachers: dict[str, TeacherRef], **params) -> Plan:
    def dom(name):
        return Domain(name=name, train=DataSource(kind="inline", rows=[{"prompt": "x"}]), reward=RewardSpec(kind="exact"))

    args = {"optim": Optim(lr=Schedule(peak=2e-3)), "steps": 40, "prompts_per_step": 4, "rollouts_per_prompt": 4,
            "micro_batch": 8, "max_response": 4}
    sft = SFTParams(optim=Optim(lr=Schedule(peak=1e-2)), steps=1)
    stages = [
        Stage(name="teach_ok", kind="sft", parent="base", domains={"a": 1.0}, params=sft),
        Stage(name="teach_no", kind="sft", parent="base", domains={"b": 1.0}, params=sft, branch=True),
        Stage(name="mix", kind="sft", parent="base", domains={"a": 0.5, "b": 0.5}, params=sft),
        Stage(name="mopd", kind="distill", parent="mix", domains={"a": 0.5, "b": 0.5},
              params=DistillParams(**{**args, **params}), teachers=teachers,
              resources=Resources(device="cpu", precision="fp32")),  # exact comparisons with fp32 losses
    ]
    return Plan(name="d", base=TINY, domains={"a": dom("a"), "b": dom("b")}, stages=stages)


TWO = {"a": TeacherRef(kind="stage", stage="teach_ok"), "default": TeacherRef(kind="stage", stage="teach_no")}


def _sft(plan: Plan, answers: list[str], steps: int = 30) -> tuple[torch.nn.Module, object]:
    """SFT a copy of the base model to answer each of `answers` (equally often) to every prompt."""
    model, tok = load_model(plan.base, seed=plan.seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    examples = [render_sft(tok, plan.chat, "none", None, s.prompt, answer, max_seq=256)
                for s in _samples("a", 8) + _samples("b", 8) for answer in answers]
    width = max(len(e.input_ids) for e in examples)
    ids = torch.tensor([e.input_ids + [tok.pad_token_id] * (width - len(e.input_ids)) for e in examples])
    loss_mask = torch.tensor([e.loss_mask + [0] * (width - len(e.loss_mask)) for e in examples], dtype=torch.bool)
    attn = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in examples])
    for _ in range(steps):
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        target = ids[:, 1:].masked_fill(~loss_mask[:, 1:], -100)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), tok


STAGES = {"teach_ok": [TARGETS["a"]], "teach_no": [TARGETS["b"]], "mix": [TARGETS["a"], TARGETS["b"]]}


@pytest.fixture(scope="module")
def teachers_dir(tmp_path_factory) -> Path:
    """A run directory in which `teach_ok` (answers y), `teach_no` (answers n) and the student's parent `mix`
    (answers y or n at random, whatever the domain: a multi-domain checkpoint that mixed the two up) have
    finished. Trained once per module."""
    root = tmp_path_factory.mktemp("run")
    plan = make_plan(TWO)
    rd = RunDir(root)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for name, answers in STAGES.items():
            model, tok = _sft(plan, answers)
            save_checkpoint(model, tok, rd.final(name))
            rd.update_stage(name, status="done", step=1)
    return root


def _ctx(root: Path, tmp_path: Path, teachers=TWO, **params):
    run = tmp_path / "run"
    run.mkdir(parents=True)
    for name in STAGES:
        (run / "stages" / name).mkdir(parents=True)
        (run / "stages" / name / "final").symlink_to(root / "stages" / name / "final")
    (run / "state.json").write_text((root / "state.json").read_text())
    plan = make_plan(teachers, **params)
    return build_context(plan, plan.stage("mopd"), RunDir(run))


def _sampled_accuracy(ctx, samples: list[Sample], model=None, k: int = 4) -> float:
    """avg@k at T=1 of answers equal to the domain's teacher answer (the eval), for the policy or `model`."""
    engine = ctx.engine if model is None else HFRolloutEngine(model, ctx.tokenizer)
    out = engine.generate([ctx.render_prompt(s) for s in samples], n=k, max_new_tokens=2, temperature=1.0,
                          top_p=1.0, top_k=0, seed=123)
    answers = [TARGETS[s.domain] for s in samples for _ in range(k)]
    return sum(t.strip() == a for a, t in zip(answers, out.texts)) / len(answers)


def test_registered_and_teachers_loaded_once_and_recorded(teachers_dir, tmp_path):
    assert TRAINERS["distill"] is DistillTrainer
    same = {"a": TeacherRef(kind="stage", stage="teach_ok"), "b": TeacherRef(kind="stage", stage="teach_ok"),
            "default": TeacherRef(kind="stage", stage="teach_no")}
    ctx = _ctx(teachers_dir, tmp_path, same)
    trainer = DistillTrainer(ctx)
    assert sorted(trainer.pool.models) == ["teach_no", "teach_ok"]  # a and b share one model object
    assert all(not p.requires_grad for m in trainer.pool.models.values() for p in m.parameters())
    recorded = json.loads((tmp_path / "run" / "stages" / "mopd" / "teachers.json").read_text())
    assert recorded["teachers"] == {"a": "teach_ok", "b": "teach_ok", "default": "teach_no"}


def test_one_step_routes_rows_and_reports_metrics(teachers_dir, tmp_path):
    ctx = _ctx(teachers_dir, tmp_path)
    trainer = DistillTrainer(ctx)
    before = [p.detach().clone() for p in ctx.policy.parameters()]
    m = trainer.step(0, _samples("a", 1) + _samples("b", 3))
    expected = {"loss", "reverse_kl", "is_ratio", "gated_frac", "entropy", "response_len", "truncated_frac",
                "tokens_per_s", "grad_norm", "lr", "gen_s", "teacher_s", "train_s", "reverse_kl/a", "reverse_kl/b"}
    assert expected <= set(m)
    assert m["teacher_rows/teach_ok"] == 4 and m["teacher_rows/teach_no"] == 12  # 4 rollouts per prompt
    # same weights sample and train: ratios are 1 up to numerics, nothing is gated
    assert m["is_ratio"] == pytest.approx(1.0, abs=1e-3) and m["gated_frac"] == 0.0
    assert m["reverse_kl"] > 1.0 and m["grad_norm"] > 0
    assert ctx.scheduler.last_epoch == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, ctx.policy.parameters()))


@pytest.mark.parametrize("loss", ["reverse_kl", "jsd"])
def test_logit_losses_take_a_step(teachers_dir, tmp_path, loss):
    ctx = _ctx(teachers_dir, tmp_path, loss=loss, kl_top_k=16)
    m = DistillTrainer(ctx).step(0, _samples("a", 2) + _samples("b", 2))
    assert m["loss"] > 0 and m["grad_norm"] > 0 and m["reverse_kl"] > 0


@pytest.mark.parametrize("loss,top_k", [("reverse_kl", 0), ("jsd", 16)])
def test_logit_loss_from_hidden_states_equals_the_loss_on_full_logits(teachers_dir, tmp_path, loss, top_k):
    # Two teachers in one micro-batch, right-padded rows of different lengths: the chunked head path must
    # give the loss and gradients of logit_distill_loss on the whole [R, T, V] logits, with per-row weights.
    from runtime.losses.distill import logit_distill_loss

    ctx = _ctx(teachers_dir, tmp_path, loss=loss, kl_top_k=top_k)
    trainer = DistillTrainer(ctx)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, len(ctx.tokenizer), (4, 9), generator=gen)
    mask = torch.zeros(4, 9, dtype=torch.bool)
    for r, (start, end) in enumerate([(3, 9), (4, 7), (2, 9), (5, 8)]):
        mask[r, start:end] = True
    attn = (torch.arange(9)[None] < torch.tensor([9, 7, 9, 8])[:, None]).long()
    first, second = sorted(trainer.pool.models)
    names = [first, second, second, first]
    row_w = torch.tensor([1.0, 0.5, 2.0, 0.0])  # teacher route weights, one of them 0
    loss_value, *_ = trainer._logit_loss(ids, attn, mask, names, num_seq=5.0, row_w=row_w)
    grads = torch.autograd.grad(loss_value, list(ctx.policy.parameters()))
    logits = ctx.policy(input_ids=ids, attention_mask=attn).logits[:, :-1] / trainer.temperature
    teacher = torch.cat([trainer.pool.models[n](input_ids=ids[r:r + 1], attention_mask=attn[r:r + 1]).logits
                         for r, n in enumerate(names)])[:, :-1].detach() / trainer.temperature
    ref, _ = logit_distill_loss(logits, teacher, mask[:, 1:], kind=loss, beta=ctx.stage.params.jsd_beta,
                                top_k=top_k, vocab_size=len(ctx.tokenizer), num_sequences=5.0, row_weights=row_w)
    ref_grads = torch.autograd.grad(ref, list(ctx.policy.parameters()))
    assert float(loss_value.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)


def test_bad_settings_and_unfinished_teacher_are_clear_errors(teachers_dir, tmp_path):
    with pytest.raises(DistillSetupError, match="`overlong = penalty`.*\nhelp: use `overlong = filter`"):
        DistillTrainer(_ctx(teachers_dir, tmp_path / "1", overlong="penalty"))
    with pytest.raises(DistillSetupError, match="`jsd_beta = 1.0`"):
        DistillTrainer(_ctx(teachers_dir, tmp_path / "2", loss="jsd", jsd_beta=1.0))
    ctx = _ctx(teachers_dir, tmp_path / "3")
    RunDir(ctx.run_dir).update_stage("teach_no", status="running")
    with pytest.raises(TeacherError, match="teacher `teach_no` .* has not finished"):
        DistillTrainer(ctx)


def test_a_teacher_with_another_tokenizer_is_rejected(teachers_dir, tmp_path):
    ctx = _ctx(teachers_dir, tmp_path)
    final = ctx.rundir.final("teach_no")
    final.unlink()
    model, tok = load_model(ModelRef(kind="tiny", name="llama", config=TINY.config))
    tok.add_tokens(["<extra>"])
    save_checkpoint(model, tok, final)
    with pytest.raises(TeacherError, match=r"teacher `teach_no \(.*\)` and student `mopd` use different tokenizers"):
        DistillTrainer(ctx)


def test_overlong_filter_drops_truncated_rows(teachers_dir, tmp_path):
    ctx = _ctx(teachers_dir, tmp_path, overlong="filter", max_response=1)
    m = DistillTrainer(ctx).step(0, _samples("a", 2))
    # one new token never ends with EOS here, so every row is truncated and filtered: no update
    assert m["truncated_frac"] == 1.0 and m["filtered_frac"] == 1.0 and m["grad_norm"] == 0.0


def test_placement_and_row_layout_helpers():
    assert plan_placement({"a": 10, "b": 10}, policy_bytes=5, budget=None) == {"a": "device", "b": "device"}
    assert plan_placement({"a": 10, "b": 10}, policy_bytes=5, budget=35) == {"a": "device", "b": "cpu"}
    assert plan_placement({"a": 10}, policy_bytes=5, budget=25) == {"a": "cpu"}
    out = place_rows([[1.0, 2.0], [], [3.0]], [1, 2, 0], 4)
    assert out.tolist() == [[0, 1, 2, 0], [0, 0, 0, 0], [3, 0, 0, 0]]


def test_on_policy_distillation_moves_reverse_kl_and_eval_towards_the_teacher(teachers_dir, tmp_path):
    """The student (`mix`) answers y or n at random; its domain-a teacher always answers y. After a few MOPD
    steps its per-token reverse KL to the teacher falls by more than half and its sampled accuracy (avg@4 at
    T=1, the eval) moves from about 0.5 to the teacher's 1.0."""
    ctx = _ctx(teachers_dir, tmp_path, optim=Optim(lr=Schedule(peak=1e-2)), steps=16, max_response=2)
    trainer = DistillTrainer(ctx)
    held = _samples("a", 8, offset=100)
    teacher_acc = _sampled_accuracy(ctx, held, trainer.pool.models["teach_ok"])
    start_acc = _sampled_accuracy(ctx, held)
    kls = [trainer.step(step, _samples("a", 4, offset=4 * step))["reverse_kl"] for step in range(16)]
    end_acc = _sampled_accuracy(ctx, held)
    assert teacher_acc == 1.0
    assert sum(kls[-3:]) / 3 < 0.5 * sum(kls[:2]) / 2, kls
    assert start_acc <= 0.75 and end_acc >= 0.9, (start_acc, end_acc)


def test_micro_batches_accumulate_to_the_full_batch_gradient(teachers_dir, tmp_path):
    """The same rollouts trained as 8 micro-batches of 2 or as one of 16 give the same update (plain SGD, no
    clipping, so the update is the gradient itself)."""
    deltas = []
    for micro in (2, 16):
        ctx = _ctx(teachers_dir, tmp_path / str(micro), micro_batch=micro,
                   optim=Optim(lr=Schedule(peak=1.0), grad_clip=float("inf")))
        ctx.optimizer = torch.optim.SGD(ctx.policy.parameters(), lr=1.0)
        ctx.scheduler = torch.optim.lr_scheduler.LambdaLR(ctx.optimizer, lambda s: 1.0)
        before = [p.detach().clone() for p in ctx.policy.parameters()]
        DistillTrainer(ctx).step(0, _samples("a", 2) + _samples("b", 2))
        deltas.append([p.detach() - b for p, b in zip(ctx.policy.parameters(), before)])
    assert max(d.abs().max().item() for d in deltas[1]) > 1e-4
    for a, b in zip(*deltas):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss", ["mopd", "reverse_kl"])
def test_teacher_temperature_scores_the_teacher_at_its_own_temperature(teachers_dir, tmp_path, monkeypatch, loss):
    """The student's own parent as its teacher, sampling at T = 0.7: scored at 0.7 the teacher equals the
    student (reverse KL 0; a run would keep the start without a step, so that rule is lifted here); at the
    default 1.0 it is the untempered teacher, which differs."""
    monkeypatch.setattr("runtime.stages.distill.nothing_to_distil", lambda *args: None)
    self_teacher = {"default": TeacherRef(kind="stage", stage="mix")}
    kls = []
    for k, teacher_t in enumerate((0.7, 1.0)):
        ctx = _ctx(teachers_dir, tmp_path / str(k), self_teacher, loss=loss, temperature=0.7,
                   teacher_temperature=teacher_t, micro_batch=16)
        kls.append(DistillTrainer(ctx).step(0, _samples("a", 2) + _samples("b", 2))["reverse_kl"])
    assert abs(kls[0]) < 1e-4 and abs(kls[1]) > 1e-2


def test_rows_are_routed_to_teachers_by_a_data_field(teachers_dir, tmp_path):
    ctx = _ctx(teachers_dir, tmp_path, {"yes": TeacherRef(kind="stage", stage="teach_ok"),
                                        "default": TeacherRef(kind="stage", stage="teach_no")})
    ctx.stage = ctx.stage.model_copy(update={"teacher_field": "meta.tag"})
    trainer = DistillTrainer(ctx)
    calls = []
    score = trainer._score

    def recording(rollouts, names, rows):
        calls.append(list(names))
        return score(rollouts, names, rows)

    trainer._score = recording
    tags = ["yes", "no", None, "yes"]
    batch = [Sample(id=f"a/{i}", domain="a", prompt=f"A: {i}?", meta={"meta": {"tag": t}} if t else {})
             for i, t in enumerate(tags)]
    m = trainer.step(0, batch)
    want = [("teach_ok" if t == "yes" else "teach_no") for t in tags for _ in range(4)]
    assert calls == [want]  # rows without the field take the default route
    assert m["teacher_rows/teach_ok"] == 8 and m["teacher_rows/teach_no"] == 8
    del ctx.stage.teachers["default"]
    trainer.teachers.pop("default")
    with pytest.warns(RuntimeWarning, match="`meta.tag` = 'no', which has no route"):
        m = trainer.step(1, batch)
    assert m["unrouted/a"] == 8 and m["teacher_rows/teach_ok"] == 8  # the `no` row and the untagged one


def test_rows_without_a_field_route_are_left_out_counted_and_warned_once(teachers_dir, tmp_path):
    ctx = _ctx(teachers_dir, tmp_path, {"gsm8k": TeacherRef(kind="stage", stage="teach_ok")})
    ctx.stage = ctx.stage.model_copy(update={"teacher_field": "data_source"})
    trainer = DistillTrainer(ctx)
    routed = [replace(s, meta={"data_source": "gsm8k"}) for s in _samples("a", 1)]
    stray = [replace(s, meta={"data_source": "hub-only"}) for s in _samples("b", 3)]
    with pytest.warns(RuntimeWarning, match="`data_source` = 'hub-only', which has no route") as seen:
        m = trainer.step(0, routed + stray)
        trainer.step(1, routed + stray)
    assert len(seen) == 1
    assert m["teacher_rows/teach_ok"] == 4 and m["unrouted/b"] == 12 and m["unrouted/a"] == 0
    assert m["filtered_frac"] == 0.75 and m["grad_norm"] > 0


@pytest.mark.parametrize("loss", ["mopd", "reverse_kl"])
def test_teacher_route_weights_scale_each_routes_gradient(teachers_dir, tmp_path, loss):
    """The same rollouts (same seed) trained with route weights: with plain SGD the update is the gradient,
    which is linear in the weights, so update(1, 1) = update(a: 0) + update(a: 2, default: 0) / 2; a weight
    of 0 on both routes leaves the policy unchanged."""
    runs = {"one": {}, "no_a": {"a": 0.0}, "two_a": {"a": 2.0, "default": 0.0}, "none": {"a": 0.0, "default": 0.0}}
    deltas, losses = {}, {}
    for key, weights in runs.items():
        ctx = _ctx(teachers_dir, tmp_path / key, loss=loss, kl_top_k=16, micro_batch=16,
                   optim=Optim(lr=Schedule(peak=1.0), grad_clip=float("inf")))
        ctx.stage = ctx.stage.model_copy(update={"teacher_weights": weights})
        ctx.optimizer = torch.optim.SGD(ctx.policy.parameters(), lr=1.0)
        ctx.scheduler = torch.optim.lr_scheduler.LambdaLR(ctx.optimizer, lambda s: 1.0)
        before = [p.detach().clone() for p in ctx.policy.parameters()]
        losses[key] = DistillTrainer(ctx).step(0, _samples("a", 2) + _samples("b", 2))["loss"]
        deltas[key] = [p.detach() - b for p, b in zip(ctx.policy.parameters(), before)]
    assert losses["one"] == pytest.approx(losses["no_a"] + losses["two_a"] / 2, rel=1e-4, abs=1e-6)
    assert losses["none"] == 0.0 and all(not d.any() for d in deltas["none"])
    assert max(d.abs().max().item() for d in deltas["two_a"]) > 1e-4
    for one, no_a, two_a in zip(deltas["one"], deltas["no_a"], deltas["two_a"]):
        torch.testing.assert_close(one, no_a + two_a / 2, rtol=1e-4, atol=1e-6)


SELF = {"default": TeacherRef(kind="stage", stage="mix")}  # `mix` is the student's parent


def test_a_stage_taught_only_by_its_own_start_has_nothing_to_learn(teachers_dir, tmp_path):
    trainer = DistillTrainer(_ctx(teachers_dir, tmp_path / "1", SELF))
    assert trainer.nothing_to_learn.startswith("nothing to distil: every teacher is `mix`, the student's own start")
    assert trainer.pool.models == {} and trainer.served == {}  # no teacher is loaded or asked
    recorded = json.loads((tmp_path / "1" / "run" / "stages" / "mopd" / "teachers.json").read_text())
    assert recorded == {"teachers": {"default": "mix"}, "placement": {}}
    # one other route, or the start scored at another temperature, is something to learn
    mixed = {**SELF, "a": TeacherRef(kind="stage", stage="teach_ok")}
    assert DistillTrainer(_ctx(teachers_dir, tmp_path / "2", mixed)).nothing_to_learn is None
    sharpened = DistillTrainer(_ctx(teachers_dir, tmp_path / "3", SELF, teacher_temperature=0.5))
    assert sharpened.nothing_to_learn is None


def test_a_trainer_with_nothing_to_learn_is_as_fully_built_as_one_that_learns(teachers_dir, tmp_path):
    idle = DistillTrainer(_ctx(teachers_dir, tmp_path / "1", SELF))
    learning = DistillTrainer(_ctx(teachers_dir, tmp_path / "2", {**SELF, "a": TeacherRef(kind="stage",
                                                                                          stage="teach_ok")}))
    assert idle.nothing_to_learn and learning.nothing_to_learn is None
    assert set(vars(idle)) == set(vars(learning))
    # what the loop and a checkpoint call: state round-trips; a step is refused by name, not an AttributeError
    idle.load_state_dict(idle.state_dict())
    with pytest.raises(RuntimeError, match="takes no step: nothing to distil"):
        idle.step(0, _samples("a", 2))


@pytest.mark.parametrize("loss", ["mopd", "reverse_kl"])
def test_the_start_as_its_own_teacher_gives_no_gradient(teachers_dir, tmp_path, monkeypatch, loss):
    """Why such a stage is not trained: at T = 1 in fp32 the loss and its gradient are 0 up to rounding."""
    monkeypatch.setattr("runtime.stages.distill.nothing_to_distil", lambda *args: None)
    trainer = DistillTrainer(_ctx(teachers_dir, tmp_path, SELF, loss=loss))
    m = trainer.step(0, _samples("a", 2) + _samples("b", 2))
    assert abs(m["reverse_kl"]) < 1e-5 and m["grad_norm"] < 1e-4


def test_the_stage_takes_no_step_and_keeps_its_start(teachers_dir, tmp_path):
    from runtime.entry import train_stage

    ctx = _ctx(teachers_dir, tmp_path, SELF)
    rd = RunDir(ctx.run_dir)
    reason = train_stage(ctx.plan, ctx.stage, rd)
    entry = rd.stage_state("mopd")
    assert reason == entry["stop_reason"] and reason.startswith("nothing to distil")
    assert entry["status"] == "done" and entry["step"] == 0
    kept, _ = load_model(ModelRef(kind="path", name=str(rd.final("mopd"))))
    start, _ = load_model(ModelRef(kind="path", name=str(rd.final("mix"))))
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), start.state_dict().values()))
    assert not rd.metrics("mopd").exists() or not rd.metrics("mopd").read_text().strip()
