"""Teacher resolution (`best(...)` from recorded evals), ordering, routing, and the tokenizer check."""

from __future__ import annotations

import json

import pytest
import torch
from synthetic_run import make_plan, write_run

from cascadec.contract.plan import TeacherRef
from runtime.models import byte_tokenizer
from runtime.teachers import (
    TeacherError,
    check_embeddings,
    check_teacher_order,
    check_tokenizers,
    recorded_teacher_scores,
    resolve_teacher,
    resolve_teachers,
    route,
)


def test_best_picks_the_candidate_with_the_highest_final_score(run_dir):
    ref = TeacherRef(kind="best", candidates=["sft", "side"], domain="math", eval="gsm")
    assert resolve_teacher(ref, run_dir) == "side"  # 0.62 > 0.50
    ref = TeacherRef(kind="best", candidates=["sft", "rl", "base"], domain="code", eval="he")
    assert resolve_teacher(ref, run_dir) == "rl"


def test_best_uses_the_last_eval_point_of_each_candidate(run_dir):
    # mopd scored math.gsm 0.52 at step 2 and 0.60 at its end (step 4): 0.60 is what counts
    ref = TeacherRef(kind="best", candidates=["sft", "mopd"], domain="math", eval="gsm")
    assert resolve_teacher(ref, run_dir) == "mopd"


def test_best_tie_goes_to_the_first_candidate(tmp_path):
    rows = [{"stage": s, "step": 1, "domain": "m", "eval": "e", "score": 0.5} for s in ("a", "b")]
    (tmp_path / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert resolve_teacher(TeacherRef(kind="best", candidates=["b", "a"], domain="m", eval="e"), tmp_path) == "b"


def test_best_over_an_eval_never_run_names_the_eval_and_candidates(run_dir):
    ref = TeacherRef(kind="best", candidates=["sft", "side"], domain="math", eval="aime")
    with pytest.raises(TeacherError) as e:
        resolve_teacher(ref, run_dir)
    msg = str(e.value)
    assert "`best(sft, side by math.aime)`" in msg and "`math.aime` was never recorded" in msg
    assert "`sft`, `side`" in msg and "\nhelp: " in msg


def test_best_with_one_candidate_unscored_names_it(run_dir):
    ref = TeacherRef(kind="best", candidates=["sft", "after"], domain="math", eval="gsm")
    with pytest.raises(TeacherError, match=r"never recorded for `after` \(candidates: `sft`, `after`\)"):
        resolve_teacher(ref, run_dir)


def test_fixed_stage_reference():
    assert resolve_teacher(TeacherRef(kind="stage", stage="base"), ".") == "base"


def test_resolve_teachers_checks_order_and_completion(plan, run_dir):
    mopd = plan.stage("mopd")
    assert resolve_teachers(plan, mopd, run_dir) == {"default": "rl", "math": "side"}


def test_teacher_that_runs_after_the_stage_is_rejected(plan):
    with pytest.raises(TeacherError, match="`after` of stage `mopd` is not an ancestor of `mopd` nor a finished branch"):
        check_teacher_order(plan, plan.stage("mopd"), "after")
    with pytest.raises(TeacherError, match="it runs as `mopd`"):
        check_teacher_order(plan, plan.stage("mopd"), "mopd")
    with pytest.raises(TeacherError, match="`nope` of stage `mopd` is not a stage of cascade `mini`"):
        check_teacher_order(plan, plan.stage("mopd"), "nope")
    check_teacher_order(plan, plan.stage("mopd"), "side")  # a side branch that ran before
    check_teacher_order(plan, plan.stage("mopd"), "base")


def test_unfinished_teacher_is_a_clear_error(tmp_path):
    plan = make_plan({"default": TeacherRef(kind="stage", stage="rl")})
    run = write_run(tmp_path / "r", plan, upto="side")
    with pytest.raises(TeacherError, match=r"teacher `rl` \(for `default`\) of stage `mopd` has not finished \(status `pending`\)"):
        resolve_teachers(plan, plan.stage("mopd"), run)


def test_route_falls_back_to_default():
    teachers = {"math": "side", "default": "rl"}
    assert route("math", teachers) == "side" and route("code", teachers) == "rl"
    with pytest.raises(TeacherError, match="domain `code` has no teacher and no `default`"):
        route("code", {"math": "side"})


def test_recorded_teacher_scores(run_dir):
    scores = recorded_teacher_scores({"math": "side", "default": "rl"}, run_dir)
    assert scores == {"math": {"code.he": 0.28, "math.gsm": 0.62}, "default": {"code.he": 0.45, "math.gsm": 0.41}}


def _other_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + [chr(c) for c in range(97, 123)])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    core.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                                   additional_special_tokens=specials[1:])


def test_same_tokenizer_passes_and_a_different_one_names_both_models():
    check_tokenizers(byte_tokenizer(), byte_tokenizer(), "mopd", "sft")
    with pytest.raises(TeacherError) as e:
        check_tokenizers(byte_tokenizer(), _other_tokenizer(), "mopd", "llama-teacher")
    msg = str(e.value)
    assert msg.startswith("teacher `llama-teacher` and student `mopd` use different tokenizers: vocabularies differ (259 vs 29")
    assert "\nhelp: " in msg


def test_equal_vocabulary_with_different_special_tokens_is_rejected():
    other = byte_tokenizer()
    other.eos_token = "<|endoftext|>"
    with pytest.raises(TeacherError, match="special token `eos_token` differs"):
        check_tokenizers(byte_tokenizer(), other, "mopd", "sft")


def test_padded_embedding_is_allowed_but_a_short_one_is_not():
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = byte_tokenizer()

    def model(vocab):
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2)
        with torch.random.fork_rng(devices=[]):
            return LlamaForCausalLM(cfg)

    check_embeddings(model(320), tok, "teacher")  # padded to a multiple of 64: fine
    with pytest.raises(TeacherError, match="`teacher` has 200 output rows but its tokenizer has 259 tokens"):
        check_embeddings(model(200), tok, "teacher")
