"""The compiler is linear in the number of stages (issue 15): CPU time of long chains, and the O(1) ancestry
used by the teacher checks against the plain parent walk."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from cascadec.checks.graph import Ancestry, ancestors, parent_cycles
from cascadec.compiler import compile_source

HEAD = ('cascade "chain" {\n  base = model(tiny(llama, hidden_size = 32, intermediate_size = 64, '
        'num_hidden_layers = 1,\n      num_attention_heads = 2, num_key_value_heads = 1))\n'
        '  domain d {\n    train = inline([{prompt = "a?", answer = "yes"}])\n'
        '    reward = exact(answer = field("answer"))\n  }\n  stage s0 = sft(base) on d { steps = 1  lr = 1e-3 }\n')


def chain(n: int, distill_every: int = 0) -> str:
    """A spec whose stages form one chain of `n`; every `distill_every`-th stage distils from `s0`."""
    lines = [HEAD]
    for i in range(1, n):
        if distill_every and i % distill_every == 0:
            lines.append(f"  stage s{i} = distill(s{i - 1}) on d {{ teachers {{ default = s0 }}  steps = 1  "
                         "lr = 1e-3 }\n")
        else:
            lines.append(f"  stage s{i} = grpo(s{i - 1}) on d {{ steps = 1  lr = 1e-3 }}\n")
    return "".join(lines) + "}\n"


def _cpu_seconds(text: str) -> float:
    """CPU seconds of this thread: the compiler runs in one, and `process_time` would also count any other thread
    of the pytest process."""
    start = time.thread_time()
    result = compile_source(text, "chain.cascade")
    elapsed = time.thread_time() - start
    assert result.ok, result.diagnostics[:3]
    return elapsed


def test_lint_time_grows_linearly_with_a_chain_of_stages():
    """4x the stages must cost well under 16x the CPU time (the old cycle check was cubic: 5,000 stages took
    400x the time of 500; quadratic would be 16x). CPU time, not wall time, so other jobs on the host do not move
    it much; still, a busy host slows a large working set more than a small one, and CI once measured 9.1x with the
    two large runs back to back. So small and large alternate, and each size keeps its best of three."""
    small, large = chain(400, distill_every=3), chain(1600, distill_every=3)
    _cpu_seconds(small)  # warm caches (grammar, imports)
    rounds = [(_cpu_seconds(small), _cpu_seconds(large)) for _ in range(3)]
    ratio = min(t for _, t in rounds) / min(t for t, _ in rounds)
    assert ratio < 8, (ratio, rounds)


parent_maps = st.dictionaries(st.sampled_from("abcdefgh"), st.sampled_from("abcdefgh") | st.just("base"),
                              max_size=8)


@given(parent_maps)
def test_ancestry_matches_the_parent_walk(parent_of):
    tree = Ancestry(parent_of)
    names = sorted(set(parent_of) | set(parent_of.values()))
    for s in parent_of:
        for a in names:
            assert tree.is_ancestor(a, s) == (a in ancestors(s, parent_of)), (a, s)


@given(parent_maps)
def test_parent_cycles_are_exactly_the_stages_that_reach_themselves(parent_of):
    on_cycle = {s for s in parent_of if s in ancestors(s, parent_of)}
    found = parent_cycles(parent_of, sorted(parent_of))
    assert sorted(n for ring in found for n in ring) == sorted(on_cycle)
