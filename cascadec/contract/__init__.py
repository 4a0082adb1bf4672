"""The compiler/runtime contract: the only part of `cascadec` that `runtime/` imports.

- `plan`: the plan IR (`plan.json`), with the batch algebra of each stage;
- `hashing`: the stage, eval and base-eval hashes (computed once, by the compiler);
- `kinds`: the registry of stage kinds, reward kinds and rollout engines;
- `datarows`: what a data row must hold;
- `fsutil`: atomic writes;
- `suggest`: "did you mean" help lines;
- `errors`: `UserError`, the base of every user-facing error.
"""
