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
