"""`instructions(ids, kwargs)`: rule-based instruction-following verifier (IFEval taxonomy, plus a few IFBench
constraints), offline: no NLTK or spaCy data.

Each checker follows the semantics of Google's IFEval reference implementation (`instructions.py` of
google-research/instruction_following_eval, strict accuracy) or, for `count:*`/`format:*` ids, of
allenai/IFBench; words are `\\w+` runs (IFEval's own `RegexpTokenizer(r"\\w+")`), sentences are split on
terminal punctuation (IFEval uses NLTK's punkt, so counts can differ on abbreviations), and the language of
a response is judged offline from its script and stop words (IFEval uses langdetect).
"""

from __future__ import annotations

import collections
import inspect
import json
import re
import string
from collections.abc import Callable, Sequence
from typing import Any, Literal

from cascadec.contract.plan import Origin
from runtime.rewards.base import RewardError, check_batch, resolve, strip_thinking
from runtime.rewards.combine import scripts

Checker = Callable[..., bool]
CHECKERS: dict[str, Checker] = {}


def _checker(*ids: str) -> Callable[[Checker], Checker]:
    def register(fn: Checker) -> Checker:
        for i in ids:
            CHECKERS[i] = fn
        return fn

    return register


def count_words(text: str) -> int:
    return len(re.findall(r"\w+", text))


_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "vs", "jr", "sr", "etc", "e.g", "i.e", "fig", "no"})


def count_sentences(text: str) -> int:
    """Sentences = pieces ending in `.`, `!` or `?` before whitespace, plus an unterminated tail; a piece that
    ends in a common abbreviation or an initial ("Dr.", "J.") continues into the next one."""
    pieces = re.split(r"(?<=[.!?])[\"')\]]*\s+", text.strip())
    count = 0
    for i, piece in enumerate(pieces):
        if not re.search(r"\w", piece):
            continue
        last = piece.rstrip(".!?").split()[-1].lower() if piece.rstrip(".!?").split() else ""
        continues = piece.endswith(".") and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()))
        if not continues or i == len(pieces) - 1:
            count += 1
    return count


def _compare(actual: int, relation: str, target: float) -> bool:
    if relation == "less than":
        return actual < target
    if relation == "at least":
        return actual >= target
    raise RewardError(f"unknown relation `{relation}`", hint="use \"less than\" or \"at least\"")


# ---------------------------------------------------------------- keywords


@_checker("keywords:existence")
def keywords_existence(response: str, *, keywords: Sequence[str]) -> bool:
    return all(re.search(re.escape(k), response, re.I) for k in keywords)


@_checker("keywords:frequency")
def keywords_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    return _compare(len(re.findall(re.escape(keyword), response, re.I)), relation, frequency)


@_checker("keywords:forbidden_words")
def forbidden_words(response: str, *, forbidden_words: Sequence[str]) -> bool:
    return not any(re.search(r"\b" + re.escape(w) + r"\b", response, re.I) for w in forbidden_words)


@_checker("keywords:letter_frequency")
def letter_frequency(response: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    return _compare(collections.Counter(response.lower())[letter.lower()], let_relation, let_frequency)


# ---------------------------------------------------------------- language


_STOPWORDS = {
    "en": "the and of to is in that it for you with on are this be as not have",
    "de": "der die und das ist nicht ich sie es ein eine zu den mit von auf",
    "fr": "le la les et est des une un pas que je vous il dans pour sur",
    "es": "el la los las y es que de no un una por para con en se",
    "it": "il la che di e non un una per sono con del della gli le",
    "pt": "o a os as e que de não um uma para com em do da",
    "nl": "de het een en is niet dat van ik je op te met zijn",
}
# IFEval language codes whose script identifies them.
_SCRIPT_LANG = {"ru": "CYRILLIC", "uk": "CYRILLIC", "bg": "CYRILLIC", "zh": "CJK", "ja": "CJK", "ko": "HANGUL",
                "ar": "ARABIC", "fa": "ARABIC", "ur": "ARABIC", "he": "HEBREW", "hi": "DEVANAGARI",
                "mr": "DEVANAGARI", "ne": "DEVANAGARI", "th": "THAI", "el": "GREEK", "bn": "BENGALI",
                "ta": "TAMIL", "te": "TELUGU", "gu": "GUJARATI", "kn": "KANNADA", "pa": "GURMUKHI"}


def _letter_scripts(text: str) -> collections.Counter[str]:
    return collections.Counter(s for ch in text if ch.isalpha() for s in scripts(ch))


def detect_language(text: str) -> str | None:
    """Best offline guess of an ISO 639-1 code: the dominant script for non-Latin scripts, stop-word
    counts among en/de/fr/es/it/pt/nl for Latin text; None when unsure."""
    counts = _letter_scripts(text)
    if not counts:
        return None
    script, _ = counts.most_common(1)[0]
    if script != "LATIN":
        if script == "CJK" and re.search(r"[\u3040-\u30ff]", text):
            return "ja"
        return next((lang for lang, s in _SCRIPT_LANG.items() if s == script), None)
    words = collections.Counter(w.lower() for w in re.findall(r"\w+", text))
    hits = {lang: sum(words[w] for w in ws.split()) for lang, ws in _STOPWORDS.items()}
    best = max(hits, key=lambda k: hits[k])
    return best if hits[best] > 0 else None


def is_english(text: str) -> bool:
    return detect_language(text) in ("en", None) and _letter_scripts(text).keys() <= {"LATIN"}


@_checker("language:response_language")
def response_language(response: str, *, language: str) -> bool:
    lang = language.lower().split("-")[0]
    if lang not in _SCRIPT_LANG and lang not in _STOPWORDS:
        raise RewardError(f"language `{language}` cannot be checked offline",
                          hint="supported: " + ", ".join(sorted({*_SCRIPT_LANG, *_STOPWORDS})))
    return detect_language(response) == lang


# ---------------------------------------------------------------- length


@_checker("length_constraints:number_words")
def number_words(response: str, *, num_words: int, relation: str) -> bool:
    return _compare(count_words(response), relation, num_words)


@_checker("length_constraints:number_sentences")
def number_sentences(response: str, *, num_sentences: int, relation: str) -> bool:
    return _compare(count_sentences(response), relation, num_sentences)


@_checker("length_constraints:number_paragraphs")
def number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
    """Paragraphs separated by the markdown divider `***` (IFEval)."""
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    count = len(paragraphs)
    for i, p in enumerate(paragraphs):
        if not p.strip():
            if i in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return False
    return count == num_paragraphs


@_checker("length_constraints:nth_paragraph_first_word")
def nth_paragraph_first_word(response: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    """Paragraphs separated by blank lines; the `nth_paragraph` (1-based) starts with `first_word`."""
    paragraphs = [p for p in re.split(r"\n\n", response) if p.strip()]
    if len(paragraphs) != num_paragraphs or not 1 <= nth_paragraph <= len(paragraphs):
        return False
    words = paragraphs[nth_paragraph - 1].strip().split()
    first = words[0].strip("\"'“”‘’*_.,!?;:()[]").lower() if words else ""
    return first == first_word.lower()


# ---------------------------------------------------------------- content and format


@_checker("detectable_content:number_placeholders")
def number_placeholders(response: str, *, num_placeholders: int) -> bool:
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


@_checker("detectable_content:postscript")
def postscript(response: str, *, postscript_marker: str) -> bool:
    marker = postscript_marker.strip().lower()
    if marker == "p.p.s":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "p.s.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker) + r".*$"
    return bool(re.findall(pattern, response.lower(), re.M))


@_checker("detectable_format:number_bullet_lists")
def number_bullet_lists(response: str, *, num_bullets: int) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", response, re.M)
    dashes = re.findall(r"^\s*-.*$", response, re.M)
    return len(stars) + len(dashes) == num_bullets


@_checker("detectable_format:constrained_response")
def constrained_response(response: str) -> bool:
    return any(o in response.strip() for o in ("My answer is yes.", "My answer is no.", "My answer is maybe."))


@_checker("detectable_format:number_highlighted_sections")
def number_highlighted_sections(response: str, *, num_highlights: int) -> bool:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", response) if h.removeprefix("**").removesuffix("**").strip()]
    return len(single) + len(double) >= num_highlights


@_checker("detectable_format:multiple_sections")
def multiple_sections(response: str, *, section_spliter: str, num_sections: int) -> bool:
    sections = re.split(r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?", response)
    return len(sections) - 1 >= num_sections


@_checker("detectable_format:json_format")
def json_format(response: str) -> bool:
    text = response.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        text = text.removeprefix(prefix)
    text = text.removesuffix("```").strip()
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@_checker("detectable_format:title")
def title(response: str) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


@_checker("combination:two_responses")
def two_responses(response: str) -> bool:
    parts = response.split("******")
    valid = []
    for i, part in enumerate(parts):
        if not part.strip():
            if i not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


@_checker("combination:repeat_prompt")
def repeat_prompt(response: str, *, prompt_to_repeat: str) -> bool:
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


@_checker("startend:end_checker")
def end_checker(response: str, *, end_phrase: str) -> bool:
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


@_checker("startend:quotation")
def quotation(response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


@_checker("change_case:capital_word_frequency")
def capital_word_frequency(response: str, *, capital_frequency: int, capital_relation: str) -> bool:
    capitals = [w for w in re.findall(r"\w+", response) if w.isupper()]
    return _compare(len(capitals), capital_relation, capital_frequency)


@_checker("change_case:english_capital")
def english_capital(response: str) -> bool:
    return response.isupper() and is_english(response)


@_checker("change_case:english_lowercase")
def english_lowercase(response: str) -> bool:
    return response.islower() and is_english(response)


@_checker("punctuation:no_comma")
def no_comma(response: str) -> bool:
    return "," not in response


# ---------------------------------------------------------------- IFBench (allenai/IFBench semantics)


@_checker("count:word_count_range")
def word_count_range(response: str, *, min_words: float, max_words: float) -> bool:
    return min_words <= count_words(response) <= max_words


@_checker("count:keywords_multiple")
def keywords_multiple(response: str, *, keyword1: str, keyword2: str, keyword3: str, keyword4: str,
                      keyword5: str) -> bool:
    """keyword1..5 must appear exactly 1, 2, 3, 5 and 7 times (substring counts, case-insensitive)."""
    text = response.lower()
    return all(text.count(k.lower()) == n for k, n in zip((keyword1, keyword2, keyword3, keyword4, keyword5),
                                                          (1, 2, 3, 5, 7)))


@_checker("count:numbers")
def numbers(response: str, *, N: float) -> bool:
    return len(re.findall(r"\d+", response.translate(str.maketrans("", "", string.punctuation)))) == N


@_checker("format:no_whitespace")
def no_whitespace(response: str) -> bool:
    return not any(ch.isspace() for ch in response)


@_checker("format:newline")
def newline(response: str) -> bool:
    text = response.translate(str.maketrans("", "", string.punctuation)).strip()
    lines = [ln for ln in text.split("\n") if ln]
    return len(lines) == len(text.split())


# ---------------------------------------------------------------- the reward


def check_instruction(instruction_id: str, response: str, kwargs: dict[str, Any] | None) -> bool:
    """Whether `response` follows one instruction.

    Args:
        instruction_id: an id of `CHECKERS` (e.g. ``length_constraints:number_words``).
        response: the completion's answer part.
        kwargs: the instruction's arguments; keys with value None are ignored (IFBench data fills every
            key with None), keys a checker does not take are ignored.

    Raises:
        RewardError: unknown id or a missing argument.
    """
    fn = CHECKERS.get(instruction_id)
    if fn is None:
        from cascadec.contract.suggest import suggest

        close = suggest(instruction_id, CHECKERS)
        raise RewardError(f"unknown instruction id `{instruction_id}`",
                          hint=f"did you mean `{close}`?" if close else f"{len(CHECKERS)} ids are supported, "
                          "see docs/rewards.md")
    params = inspect.signature(fn).parameters
    given = {k: v for k, v in (kwargs or {}).items() if v is not None and k in params}
    missing = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in given]
    if missing:
        raise RewardError(f"instruction `{instruction_id}` needs argument `{missing[0]}`",
                          hint="add it to the sample's kwargs")
    return bool(fn(response, **given))


class InstructionsReward:
    """Instruction-following reward (Nemotron-Cascade IF-RL's rule-based verifier).

    Args:
        ids: the instruction ids of each sample, usually `{"field": "instruction_id_list"}`.
        kwargs: one argument dict per id, usually `{"field": "kwargs"}` (a JSON string is decoded).
        mode: ``all`` (1.0 iff every instruction is followed, IFEval strict prompt-level) or ``fraction``
            (instruction-level accuracy).
    """

    def __init__(self, ids: Any = None, kwargs: Any = None, *, mode: Literal["all", "fraction"] = "all",
                 origin: Origin | None = None) -> None:
        if mode not in ("all", "fraction"):
            raise RewardError(f"reward `instructions` has mode `{mode}`", hint="use mode = all or fraction",
                              origin=origin)
        self.ids = {"field": "instruction_id_list"} if ids is None else ids
        self.kwargs = {"field": "kwargs"} if kwargs is None else kwargs
        self.mode = mode
        self.origin = origin

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        out = []
        for sample, completion in zip(samples, completions):
            ids = resolve(self.ids, sample)
            kwargs = resolve(self.kwargs, sample)
            if isinstance(kwargs, str):
                kwargs = json.loads(kwargs)
            kwargs = kwargs or [{}] * len(ids)
            if isinstance(ids, str) or len(kwargs) != len(ids):
                raise RewardError(f"sample `{sample.id}` has {len(kwargs)} kwargs for {len(ids)} instruction ids",
                                  hint="give a list of ids and one kwargs dict per id", origin=self.origin)
            response = strip_thinking(completion).strip()
            followed = [check_instruction(i, response, k) for i, k in zip(ids, kwargs)]
            out.append(float(all(followed)) if self.mode == "all" else sum(followed) / max(1, len(followed)))
        return out
