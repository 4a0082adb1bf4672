"""MATH-style scoring in veRL's contract: the last `\\boxed{...}` against the ground truth; a float return."""


def last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    return 1.0 if last_boxed(solution_str) == str(ground_truth).strip() else 0.0
