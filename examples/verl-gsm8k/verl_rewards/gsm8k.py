"""GSM8K-style scoring in veRL's contract: the answer follows `####`; `score` for a correct answer,
`format_score` for a well-formed wrong one, 0 otherwise, with the extracted answer logged as `acc`."""

import re

_FINAL = re.compile(r"####\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)")


def extract(solution_str: str) -> str | None:
    found = _FINAL.findall(solution_str)
    return found[-1].replace(",", "") if found else None


def compute_score(data_source, solution_str, ground_truth, extra_info=None, format_score: float = 0.0,
                  score: float = 1.0):
    answer = extract(solution_str)
    correct = answer is not None and answer == str(ground_truth)
    value = score if correct else (format_score if answer is not None else 0.0)
    return {"score": value, "acc": float(correct), "formatted": float(answer is not None)}
