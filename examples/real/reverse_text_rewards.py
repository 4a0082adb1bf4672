"""The reward of prime-rl's `reverse-text` environment (verifiers), in cascadec's own contract: the
similarity (difflib's `SequenceMatcher.ratio`, the environment's "LCS ratio") between the text inside the
completion's `<reversed_text>` tags and the prompt reversed character by character."""

import re
from difflib import SequenceMatcher

_TAG = re.compile(r"<reversed_text>\s*(.*?)\s*(?:</reversed_text>|$)", re.DOTALL)


def lcs_ratio(samples, completions):
    out = []
    for sample, text in zip(samples, completions):
        found = _TAG.findall(text)
        answer = found[-1] if found else ""
        out.append(SequenceMatcher(None, answer, sample.prompt[::-1]).ratio())
    return out
