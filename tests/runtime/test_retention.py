"""Checkpoint retention (runtime.retention): which snapshots stay."""

from runtime.retention import prune, retained, snapshot_dir, snapshot_steps


def test_last_n():
    assert retained([10, 20, 30, 40], 2, None) == {30, 40}
    assert retained([10], 3, None) == {10}


def test_best_by_score_plus_last():
    scores = {10: 0.5, 20: 0.9, 30: 0.1, 40: 0.2}
    assert retained([10, 20, 30, 40], 1, scores) == {20, 40}
    assert retained([10, 20, 30, 40], 0, scores) == {20}
    # a tie keeps the earlier snapshot; unscored snapshots are never "best"
    assert retained([10, 20, 30], 0, {10: 0.5, 30: 0.5}) == {10}


def test_prune_deletes_the_rest(tmp_path):
    for s in (5, 10, 15):
        snapshot_dir(tmp_path, s).mkdir(parents=True)
    (tmp_path / "snapshots" / "step-000020.tmp").mkdir()  # a half-written one is not a snapshot
    assert snapshot_steps(tmp_path) == [5, 10, 15]
    assert prune(tmp_path, 1, {5: 1.0, 10: 0.0}) == [10]
    assert snapshot_steps(tmp_path) == [5, 15]


def test_the_loop_snapshots_and_prunes_by_the_stage_rule(tmp_path):
    """`runtime.loop.snapshot` on a real context: Hugging Face snapshots, pruned to the last one plus the best
    by the rule's eval as recorded in evals.jsonl."""
    from test_grpo_trainer import make_ctx

    from cascadec.contract.plan import Retention
    from runtime.loop import snapshot
    from runtime.state import append_jsonl

    ctx = make_ctx(tmp_path)
    ctx.stage = ctx.stage.model_copy(update={"keep": Retention(last=1, domain="toy", eval="e"), "eval_every": 1})
    for step, score in ((1, 0.2), (2, 0.9), (3, 0.1), (4, 0.3)):
        append_jsonl(ctx.rundir.evals_jsonl, {"stage": "rl", "step": step, "domain": "toy", "eval": "e", "score": score})
        snapshot(ctx, step)
    stage_dir = ctx.rundir.stage_dir("rl")
    assert snapshot_steps(stage_dir) == [2, 4]  # the best (0.9 at step 2) and the last
    assert (snapshot_dir(stage_dir, 2) / "config.json").is_file()
