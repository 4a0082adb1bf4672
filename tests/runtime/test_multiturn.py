"""Chat-list prompts and multi-turn SFT: the loss covers every assistant turn and nothing else, token by token."""

import pytest

from cascadec.contract.plan import ChatOverride, ChatTemplate
from runtime.chat import ChatError, render_prompt, render_sft_chat, resolve_chat
from runtime.models import byte_tokenizer
from runtime.rows import Sample
from runtime.stages.sft import sft_turns

CHAT = ChatTemplate()
TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "U1"},
    {"role": "assistant", "content": "A-one"},
    {"role": "user", "content": "U2"},
    {"role": "assistant", "content": "A-two"},
    {"role": "user", "content": "U3"},
    {"role": "assistant", "content": "A-three"},
]


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer()


def _trained_runs(tok, ex):
    """The decoded text of each maximal run of loss-masked tokens."""
    runs, cur = [], []
    for t, m in zip(ex.input_ids, ex.loss_mask):
        if m:
            cur.append(t)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


@pytest.mark.parametrize("mode", ["none", "thinking"])
def test_loss_on_every_assistant_turn_and_nothing_else(tok, mode):
    ex = render_sft_chat(tok, CHAT, mode, TURNS, max_seq=4096)
    assert _trained_runs(tok, ex) == ["A-one<|im_end|>", "A-two<|im_end|>", "A-three<|im_end|>"]
    # token by token: the byte tokenizer has one token per byte, so the mask can be checked against the text
    text = tok.decode(ex.input_ids)
    prefix = "<think>\n" if mode == "thinking" else ""
    expected = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n"
                "A-one<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\nA-two<|im_end|>\n"
                "<|im_start|>user\nU3<|im_end|>\n<|im_start|>assistant\n" + prefix + "A-three<|im_end|>")
    assert text == expected
    trained = "".join(tok.decode([t]) if m else "\0" * len(tok.decode([t]))
                      for t, m in zip(ex.input_ids, ex.loss_mask))
    for piece in ("A-one<|im_end|>", "A-two<|im_end|>", "A-three<|im_end|>"):
        at = expected.index(piece)
        assert trained[at:at + len(piece)] == piece
    assert trained.replace("A-one<|im_end|>", "").replace("A-two<|im_end|>", "").replace(
        "A-three<|im_end|>", "").strip("\0") == ""


def test_last_prompt_tokens_equal_the_rollout_prompt(tok):
    ex = render_sft_chat(tok, CHAT, "thinking", TURNS, max_seq=4096)
    prompt = render_prompt(tok, CHAT, "thinking", None, "U3", TURNS[:-1])
    ids = tok.encode(prompt, add_special_tokens=False)
    assert ex.input_ids[:len(ids)] == ids


def test_rollout_prompt_drops_trailing_assistant_turns_and_keeps_history(tok):
    text = render_prompt(tok, CHAT, "none", "ignored: the data has a system turn", "U3", TURNS)
    assert text.endswith("<|im_start|>user\nU3<|im_end|>\n<|im_start|>assistant\n")
    assert "Be brief." in text and "A-two" in text and "A-three" not in text and "ignored" not in text


def test_sft_turns_of_chat_rows(tok):
    chat_row = Sample(id="a", domain="d", prompt="U3", messages=tuple(TURNS))
    assert sft_turns(chat_row, None) == TURNS
    open_end = Sample(id="a", domain="d", prompt="U3", messages=tuple(TURNS[:-1]), meta={"completion": "C"})
    assert sft_turns(open_end, "S")[-1] == {"role": "assistant", "content": "C"}
    cut = Sample(id="a", domain="d", prompt="U3", messages=tuple(TURNS[:-1]))
    assert sft_turns(cut, None) == TURNS[:5]


def test_unstable_template_is_a_chat_error(tok):
    # a template that numbers the remaining turns renders turn 1 differently once turn 2 exists
    unstable = ChatTemplate(template="{% for m in messages %}{{ messages|length }}{{ m.content }}<|im_end|>"
                                     "{% endfor %}{% if add_generation_prompt %}>{% endif %}")
    with pytest.raises(ChatError, match="prefix-stable"):
        render_sft_chat(tok, unstable, "none", TURNS[1:], max_seq=4096)


def test_template_override_and_kwargs(tok):
    jinja = ("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
             "{% if add_generation_prompt %}[assistant]{% if not enable_thinking %}<nothink>{% endif %}{% endif %}")
    chat = resolve_chat(CHAT, ChatOverride(template=jinja, kwargs={"enable_thinking": True}, system="S"),
                        ChatOverride(kwargs={"enable_thinking": False}))
    assert chat.system == "S" and chat.kwargs == {"enable_thinking": False}
    assert render_prompt(tok, chat, "none", chat.system, "hi") == "[system]S[user]hi[assistant]<nothink>"
    broken = ChatTemplate(template="{% for %}")
    with pytest.raises(ChatError, match="failed to render"):
        render_prompt(tok, broken, "none", None, "hi")


def test_a_completion_column_in_chat_format_is_appended_as_turns(tok):
    row = Sample(id="a", domain="d", prompt="U1", messages=({"role": "user", "content": "U1"},),
                 meta={"completion": [{"role": "assistant", "content": "olleh"}]})
    turns = sft_turns(row, None)
    assert turns[-1] == {"role": "assistant", "content": "olleh"}
    ex = render_sft_chat(tok, CHAT, "none", turns, max_seq=512)
    assert _trained_runs(tok, ex) == ["olleh<|im_end|>"]
