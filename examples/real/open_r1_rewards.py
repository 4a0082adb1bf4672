"""The two reward functions open-r1's GRPO demo recipe names (`reward_funcs: [accuracy, format]`), written
again for the TRL contract they use (`fn(completions, **columns)` with conversational completions), so that
`py("open_r1_rewards:accuracy", contract = trl)` needs no `open_r1` package. A re-implementation of their
documented behaviour, not a copy: accuracy checks the completion against the `solution` column with
math-verify; format requires `<think>...</think>` then `<answer>...</answer>`."""

import re

_FORMAT = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.DOTALL)


def _texts(completions):
    return [c[0]["content"] if isinstance(c, list) else c for c in completions]


def accuracy(completions, solution, **kwargs):
    """1.0 when math-verify finds the completion's answer equal to the gold solution's, else 0.0 (also when
    the gold solution has nothing math-verify can parse: the original skips such rows instead)."""
    from math_verify import parse, verify

    out = []
    for text, sol in zip(_texts(completions), solution):
        gold = parse(sol, extraction_mode="first_match")
        out.append(float(verify(gold, parse(text))) if gold else 0.0)
    return out


def format(completions, **kwargs):  # noqa: A001 - the name the recipe uses
    """1.0 when the completion is `<think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>`, else 0.0."""
    return [1.0 if _FORMAT.match(text) else 0.0 for text in _texts(completions)]
