"""Dynamic sampling's budget and shortfall policies, and the no-signal watch (runtime.dynamic_sampling)."""

import pytest

from runtime.dynamic_sampling import NoSignalError, NoSignalWatch, after_attempt


def test_enough_groups_train_without_a_warning():
    d = after_attempt(8, 8, 1, 3, "error", "rl", 0)
    assert (d.more, d.train, d.warning) == (False, True, None)


def test_short_of_groups_samples_again_within_the_budget():
    d = after_attempt(5, 8, 2, 3, "error", "rl", 0)
    assert d.more and not d.train


def test_error_policy_stops_with_a_hint():
    with pytest.raises(NoSignalError, match=r"(?s)stage `rl` step 4: 3 of 8 groups.*3 generation batches.*help:"):
        after_attempt(3, 8, 3, 3, "error", "rl", 4)


def test_partial_trains_on_what_there_is_and_says_so():
    d = after_attempt(3, 8, 3, 3, "partial", "rl", 4)
    assert d.train and not d.more and "training on those 3" in d.warning


def test_skip_takes_no_step_and_says_so():
    d = after_attempt(3, 8, 3, 3, "skip", "rl", 4)
    assert not d.train and "no update this step" in d.warning


def test_nothing_informative_is_never_trained_on_silently():
    d = after_attempt(0, 8, 1, 1, "partial", "rl", 4)
    assert not d.train and "0 of 8 groups" in d.warning


def test_plain_filtering_short_of_a_full_batch_is_a_metric_not_a_warning():
    d = after_attempt(5, 8, 1, 1, "partial", "rl", 4)
    assert d.train and d.warning is None


def test_watch_warns_after_patience_steps_without_signal():
    watch = NoSignalWatch("rl", 3)
    assert [watch.observe(s, 0) for s in range(2)] == [None, None]
    assert "no group with a learning signal for 3 steps in a row (up to step 2)" in watch.observe(2, 0)
    assert watch.observe(3, 1) is None and watch.streak == 0
    assert NoSignalWatch("rl", 0).observe(0, 0) is None  # patience 0: off
