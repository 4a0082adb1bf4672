"""Reward contracts: every reward builds and returns one finite float per completion on a tiny batch."""

from __future__ import annotations

import json
import warnings

from cascadec.contract.plan import DataSource, Domain, ModelRef, Origin, Plan, RewardSpec
from runtime.rewards.contracts import Problem, check_rewards, tiny_batch

ORIGIN = Origin(path="x.cascade", line=7, column=14, end_line=7, end_column=40)


def _plan(**domains: Domain) -> Plan:
    return Plan(name="t", base=ModelRef(kind="tiny", name="llama"), domains=domains, stages=[])


def _domain(reward: RewardSpec, train: DataSource | None = None) -> Domain:
    return Domain(name="d", train=train or DataSource(kind="jsonl", path="/nonexistent/x.jsonl"), reward=reward)


def _write_module(tmp_path, monkeypatch, name: str, body: str) -> None:
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_good_rewards_have_no_problems(tmp_path):
    data = tmp_path / "math.jsonl"
    data.write_text("\n".join(json.dumps({"problem": f"{i}+1?", "answer": str(i + 1)}) for i in range(100)))
    plan = _plan(
        math=_domain(RewardSpec(kind="math_verify", args={"answer": {"field": "answer"}}),
                     DataSource(kind="jsonl", path=str(data), fields={"prompt": "problem"})),
        gym=_domain(RewardSpec(kind="gym"), DataSource(kind="gym", name="basic_arithmetic", size=20000, seed=1)),
        ifeval=_domain(RewardSpec(kind="instructions", args={"ids": {"field": "instruction_id_list"},
                                                             "kwargs": {"field": "kwargs"}})),
        code=_domain(RewardSpec(kind="unit_tests", args={"tests": {"field": "tests"}, "timeout": 2.0})),
        mcqa=_domain(RewardSpec(kind="choice", args={"answer": {"field": "answer"}})),
        structured=_domain(RewardSpec(kind="json_schema", args={"schema": {"field": "schema"}})),
        inline=_domain(RewardSpec(kind="exact"), DataSource(kind="inline", rows=[{"prompt": "p", "answer": "a"}])),
    )
    found = check_rewards(plan)
    # the domains without loadable data are checked on synthetic rows, and lint says so (CAS503)
    assert {p.domain for p in found} == {"ifeval", "code", "mcqa", "structured"}
    assert all(p.code == "CAS503" and "synthetic samples" in p.message and "/nonexistent/x.jsonl" in p.message
               for p in found)


def test_tiny_batch_reads_real_rows_first(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"q{i}", "answer": i}) for i in range(5)))
    samples, where = tiny_batch("d", _domain(RewardSpec(kind="exact"), DataSource(kind="jsonl", path=str(data))))
    assert [s.prompt for s in samples] == ["q0", "q1"] and where == "its training data"
    samples, where = tiny_batch("d", _domain(RewardSpec(kind="exact")))
    assert where == ("synthetic samples, as its data could not be loaded (`/nonexistent/x.jsonl`: No such file or "
                     "directory)")


def test_wrong_count_is_reported_with_origin(tmp_path, monkeypatch):
    """peers.md pain point 7: a reward returning [1.0] for several completions."""
    _write_module(tmp_path, monkeypatch, "contract_one", "def one(samples, completions):\n    return [1.0]\n")
    plan = _plan(chat=_domain(RewardSpec(kind="py", args={"fn": "contract_one:one"}, origin=ORIGIN)))
    [p] = check_rewards(plan)
    assert isinstance(p, Problem) and (p.domain, p.kind, p.origin) == ("chat", "py", ORIGIN)
    assert "returned 1 values for 4 completions" in p.message


def test_non_finite_and_raising_rewards(tmp_path, monkeypatch):
    _write_module(tmp_path, monkeypatch, "contract_bad",
                  "def nan(samples, completions):\n    return [float('nan')] * len(completions)\n"
                  "def boom(samples, completions):\n    raise KeyError('tests')\n")
    plan = _plan(a=_domain(RewardSpec(kind="py", args={"fn": "contract_bad:nan"})),
                 b=_domain(RewardSpec(kind="py", args={"fn": "contract_bad:boom"})))
    a, b = check_rewards(plan)
    assert a.domain == "a" and "non-finite" in a.message
    assert b.domain == "b" and "raised KeyError" in b.message and "synthetic" in b.message


def test_build_errors_become_problems():
    domain_origin = Origin(path="x.cascade", line=3, column=3, end_line=9, end_column=4)
    plan = _plan(
        a=_domain(RewardSpec(kind="py", args={"fn": "rewards.code_based.strict_format"})),
        b=Domain(name="b", train=DataSource(kind="inline", rows=[{"prompt": "p"}]),
                 reward=RewardSpec(kind="math_verify", args={"after": "</think>"}), origin=domain_origin),
        c=_domain(RewardSpec(kind="no_such_reward")),
    )
    a, b, c = check_rewards(plan)
    assert "no `:`" in a.message and 'py("rewards.code_based:strict_format")' in a.hint
    assert "no argument `after`" in b.message and b.origin == domain_origin
    assert "unknown reward kind" in c.message


def test_missing_column_in_real_data(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "q", "solution": "4"}) + "\n")
    plan = _plan(m=_domain(RewardSpec(kind="math_verify", args={"answer": {"field": "gold"}}),
                           DataSource(kind="jsonl", path=str(data))))
    [p] = check_rewards(plan)
    assert "no column `gold`" in p.message and "on its training data" in p.message


def test_uncached_hub_model_is_reported_without_network():
    import time

    plan = _plan(chat=_domain(RewardSpec(kind="reward_model", args={"model": "nobody-here/no-such-rm-7b"})))
    start = time.monotonic()
    [p] = check_rewards(plan)
    assert "`nobody-here/no-such-rm-7b` is neither a local directory nor in the Hugging Face cache" in p.message
    assert "huggingface-cli download" in p.hint
    assert time.monotonic() - start < 5


def test_trl_columns_are_filled_on_synthetic_samples(tmp_path, monkeypatch):
    """A TRL function names dataset columns as parameters; with data that cannot be loaded (an uncached hub
    dataset), the synthetic samples carry them, so the contract is checked instead of failing on a missing
    argument. A wrong return count is still reported."""
    _write_module(tmp_path, monkeypatch, "contract_trl",
                  "def acc(completions, solution, **kwargs):\n    return [float(solution[0] in c) for c in completions]\n"
                  "def short(completions, solution, **kwargs):\n    return [1.0]\n")
    good = RewardSpec(kind="py", args={"fn": "contract_trl:acc", "contract": "trl"})
    samples, where = tiny_batch("d", _domain(good))
    assert where.startswith("synthetic") and all("solution" in s.meta for s in samples)
    plan = _plan(a=_domain(good), b=_domain(RewardSpec(kind="py", args={"fn": "contract_trl:short", "contract": "trl"})))
    a, b = check_rewards(plan)
    assert b.domain == "b" and "returned 1 values for 4 completions" in b.message
    assert (a.domain, a.code) == ("a", "CAS503")  # it held, but only on synthetic rows: lint says so


def test_a_routed_rewards_unrouted_rows_are_no_contract_problem(tmp_path, monkeypatch):
    _write_module(tmp_path, monkeypatch, "contract_routed",
                  "def nan(samples, completions):\n    return [float('nan')] * len(completions)\n")
    rows = DataSource(kind="inline", rows=[{"prompt": "p", "answer": "a", "src": "x"}, {"prompt": "q", "src": "y"}])

    def routed(inner: RewardSpec) -> Domain:
        return _domain(RewardSpec(kind="route", args={"by": "src", "keys": ["x"]}, parts=[inner], weights=[1.0]),
                       rows)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the unrouted row's warning
        assert check_rewards(_plan(ok=routed(RewardSpec(kind="exact")))) == []
        # NaN from the user's function on a routed row is still reported
        [p] = check_rewards(_plan(bad=routed(RewardSpec(kind="py", args={"fn": "contract_routed:nan"}))))
    assert "non-finite" in p.message or "not a finite" in p.message
