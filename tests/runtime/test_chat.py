"""Chat rendering: template, system prompt, mode prefixes, SFT masks."""

import pytest

from cascadec.contract.plan import ChatTemplate
from runtime.chat import ChatError, render_prompt, render_sft
from runtime.models import byte_tokenizer

CHAT = ChatTemplate()


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer()


@pytest.mark.parametrize("mode, suffix", [("none", ""), ("thinking", "<think>\n"),
                                          ("no_thinking", "<think></think>")])
def test_prompt_has_template_system_and_mode_prefix(tok, mode, suffix):
    text = render_prompt(tok, CHAT, mode, "Be brief.", "2+2?")
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                    "<|im_start|>assistant\n" + suffix)


def test_prompt_without_system(tok):
    assert render_prompt(tok, CHAT, "none", None, "hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_sft_mask_covers_completion_and_eos_only(tok):
    ex = render_sft(tok, CHAT, "no_thinking", None, "2+2?", "Answer: 4", max_seq=512)
    prompt_len = len(tok.encode(render_prompt(tok, CHAT, "no_thinking", None, "2+2?"), add_special_tokens=False))
    assert ex.loss_mask == [0] * prompt_len + [1] * (len(ex.input_ids) - prompt_len)
    assert tok.decode(ex.input_ids[prompt_len:]) == "Answer: 4<|im_end|>"
    assert not ex.truncated


def test_sft_truncation_and_errors(tok):
    ex = render_sft(tok, CHAT, "none", None, "q", "a long completion", max_seq=30)
    assert len(ex.input_ids) == 30 and ex.truncated and ex.input_ids[-1] != tok.eos_token_id
    with pytest.raises(ChatError, match="raise `max_seq`"):
        render_sft(tok, CHAT, "none", None, "q" * 100, "a", max_seq=40)
    bare = byte_tokenizer()
    bare.chat_template = None
    with pytest.raises(ChatError, match="no chat template"):
        render_prompt(bare, CHAT, "none", None, "q")
