"""Stable diagnostic codes: name, one-line summary and an explanation for `cascadec explain CODE`.

Ranges: CAS0xx files, CAS1xx syntax, CAS2xx values and types, CAS3xx names and structure, CAS4xx
semantics of the cascade, CAS5xx checks that need the runtime (run by the CLI), CAS999 internal errors. Codes are never renumbered; retired codes stay listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from cascadec.diagnostics import Diagnostic, Label, Severity, Span


@dataclass(frozen=True)
class Code:
    code: str
    name: str
    severity: Severity
    summary: str
    explanation: str


_TABLE: tuple[Code, ...] = (
    Code("CAS009", "unreadable-file", "error", "a spec file cannot be read",
         "The file given on the command line does not exist, is not readable, or is not UTF-8 text."),
    Code("CAS100", "syntax-error", "error", "the parser met a token it did not expect",
         "The text does not follow the grammar of the language (docs/language.md). The caret points at the "
         "first token the parser could not use; the help line lists what it expected there. A frequent cause "
         "is a missing `=` between a key and its value or an unclosed bracket."),
    Code("CAS101", "unexpected-character", "error", "a character that no token can start with",
         "The lexer found a character that starts no token of the language, for example `$` or `;`. Strings "
         "must use double quotes; comments start with `#`. Outside strings and comments the language is ASCII: "
         "a character pasted from a word processor or typed on another keyboard layout (a fullwidth `＝`, curly "
         "quotes, an en dash, a no-break space) is named with its code point, and the help gives the ASCII it "
         "stands for. An invisible character (a bidirectional control such as U+202E, a zero-width space) "
         "must be deleted; excerpts show it as `<U+202E>`, never raw, so that the text reads as it parses."),
    Code("CAS102", "unexpected-end", "error", "the file ended in the middle of a construct",
         "The file ended before a block, list or call was closed. Usually a `}` or `)` is missing."),
    Code("CAS103", "invalid-string", "error", "a string literal has an invalid escape",
         "Strings use JSON escapes: `\\n`, `\\t`, `\\\"`, `\\\\` and `\\uXXXX`. Write a literal backslash as `\\\\`. "
         "A `\\uXXXX` in the surrogate range (`\\ud800`-`\\udfff`) is half a character: write both halves of "
         "the pair, high then low (`\\ud83d\\ude00`), or the character itself."),
    Code("CAS104", "unknown-unit", "error", "a number carries a unit the language does not know",
         "Quantities are a number directly followed by a unit: counts `k M G Ki Mi`, times `ms s min h`, "
         "memory `B KB MB GB TB KiB MiB GiB TiB`."),
    Code("CAS105", "nesting-too-deep", "error", "brackets are nested too deeply",
         "Lists, calls and blocks may nest at most 64 levels. Real specs nest a handful of levels; deeper "
         "nesting is almost always generated or corrupted text."),
    Code("CAS200", "invalid-value", "error", "a value has the wrong type",
         "The value given for a key has the wrong shape, for example a string where a number is expected, "
         "or a name that is not one of the allowed choices. The help line gives the expected type."),
    Code("CAS201", "out-of-range", "error", "a value is outside its valid range",
         "Numbers have ranges: learning rates and weights must be positive, `top_p` lies in (0, 1], "
         "`temperature` is non-negative, `is_band` must satisfy low < 1 < high, counts are at least 1. A token "
         "length the spec sets (`max_seq`, `max_prompt`, `max_response`, their sum, an eval's `max_tokens`) may "
         "not pass 2^24 (float32, in which rotary angles are computed, tells positions apart only up to there), "
         "nor, for a base model in a local directory with a learned position table (GPT-2 and kin), its "
         "`max_position_embeddings`: the run would index past the table."),
    Code("CAS202", "unit-mismatch", "error", "a quantity has a unit of the wrong kind",
         "A token length takes a count (`49k`, `48Ki`), a timeout a time (`6s`), a memory limit a size "
         "(`1GiB`). Using a time where a count is expected (or the reverse) is an error, and so is a memory "
         "setting without its unit (`memory_per_gpu = 80` is not 80 bytes: write `80GB`)."),
    Code("CAS203", "missing-value", "error", "a required key is not set",
         "Some keys have no default: a stage needs `steps` (in the stage or in `defaults KIND`), a domain "
         "needs `train`, the cascade needs `base`."),
    Code("CAS300", "unknown-name", "error", "a name refers to no stage, domain or eval",
         "Stage parents, teachers, `on` domains and `until`/`best` references must name something declared "
         "in the file (or an imported file). The help line suggests the closest declared name."),
    Code("CAS301", "unknown-key", "error", "a key that no block of this kind accepts",
         "Each block accepts a fixed set of keys (docs/language.md). A misspelt key is reported with the "
         "closest valid key."),
    Code("CAS302", "misplaced-key", "error", "a key that belongs to another stage kind",
         "The key is valid, but not for this stage kind; for example `kl` is a `grpo` key and has no meaning "
         "in an `sft` stage. Move it to a stage of the right kind or remove it."),
    Code("CAS303", "duplicate-definition", "error", "a name or key is defined twice",
         "Stages, domains, evals, teacher routes and keys inside one block must be unique, and no stage may "
         "share its name with a named checkpoint (a parent or teacher name must say which one it means). The "
         "secondary label points at the first definition."),
    Code("CAS304", "stage-cycle", "error", "stages form a cycle through their parents",
         "Every stage starts from its parent's final checkpoint, so the parent relation must be acyclic and "
         "end at `base`. A stage cannot be its own ancestor."),
    Code("CAS305", "teacher-not-available", "error", "a teacher is not an ancestor or a finished branch",
         "A distillation teacher must be a checkpoint that exists when the stage starts: `base`, a stage on "
         "the student's parent chain, or a finished branch — a stage declared before the distill stage that "
         "is not its ancestor but whose own parent chain meets the student's chain."),
    Code("CAS306", "domain-without-reward", "error", "a domain that a GRPO stage or an eval uses has no reward",
         "GRPO scores its rollouts with the reward of each domain it trains on (every domain, without `on`), and "
         "an eval scores completions with its domain's reward, so such a domain must set `reward = ...`. A domain "
         "that is only fine-tuned or distilled on, with no eval, needs none: a reward there would be unused."),
    Code("CAS307", "unknown-eval", "error", "a stop rule or `best(...)` names an eval that does not exist",
         "`until` clauses and `best(... by domain.eval)` read scores of a domain's eval; the eval must be "
         "declared inside that domain with `eval NAME = ...`."),
    Code("CAS308", "import-cycle", "error", "files import each other in a cycle",
         "An imported file (directly or through others) imports the file that imports it."),
    Code("CAS309", "import-not-found", "error", "an imported file does not exist",
         "Import paths are relative to the directory of the file that holds the `import`."),
    Code("CAS310", "distill-without-teachers", "error", "a distill stage has no teachers",
         "On-policy distillation scores each sampled token with a teacher; a `distill` stage needs a "
         "`teachers { }` block with at least one route (`default = STAGE` covers every domain)."),
    Code("CAS311", "bad-file-structure", "error", "the file has no cascade block, or more than one",
         "The file you compile holds exactly one `cascade \"NAME\" { }` block; imported files hold none."),
    Code("CAS312", "unknown-kind", "error", "an unknown data source, reward kind or model source",
         "Data sources are `jsonl`, `gym`, `hf_disk`, `inline`; rewards and model sources are listed in "
         "docs/language.md."),
    Code("CAS313", "misplaced-block", "error", "a block that is not allowed here",
         "`teachers { }` belongs only in `distill` stages, and `teacher(DOMAIN).EVAL` in a stop rule only "
         "there too. `defaults` blocks hold plain keys: `teachers`, `until` and `resources` go into the stages "
         "themselves (shared resources go into the cascade's own `resources { }`, which every stage inherits)."),
    Code("CAS314", "no-stages", "error", "the cascade declares no stage",
         "A cascade needs at least one `stage NAME = KIND(PARENT) { ... }`."),
    Code("CAS315", "teacher-domain-unused", "warning", "a teacher route names a domain the stage does not train on",
         "The routed domain is not in the stage's `on` list, so no prompt will be routed to that teacher."),
    Code("CAS316", "teacher-not-routed", "error", "a stop rule reads the teacher of a domain that has none",
         "`teacher(DOMAIN).EVAL` compares with the score of the teacher that DOMAIN's prompts are routed to. "
         "The `teachers { }` block must route DOMAIN, or give a `default` teacher."),
    Code("CAS317", "domain-without-teacher", "error", "a distill stage trains on a domain that no teacher covers",
         "Every sampled completion is scored by the teacher its domain is routed to. A domain the stage trains "
         "on (its `on` list, or every domain without `on`) needs a route of its own or a `default` route."),
    Code("CAS318", "unknown-gym-generator", "error", "`gym(\"NAME\")` names no reasoning-gym generator",
         "`gym(\"NAME\", ...)` data and `gym(name = \"NAME\")` rewards must name a generator registered in "
         "reasoning-gym (`reasoning_gym.factory.DATASETS`). The compiler checks against the list in "
         "`cascadec/gym_registry.json`, read from the reasoning-gym version named there; the help line suggests "
         "the closest name, and `python -c \"import reasoning_gym; print(*sorted(reasoning_gym.factory.DATASETS))\"` "
         "prints them all."),
    Code("CAS319", "unknown-gym-argument", "error", "a `gym(...)` keyword that the generator's config does not have",
         "`gym(\"NAME\", size = N, seed = S, key = value, ...)` reads `size` and `seed` itself and passes every "
         "other keyword to the config dataclass of generator NAME, which rejects a field it does not have. The "
         "help line suggests the closest field of that generator's config, or lists them all."),
    Code("CAS320", "data-not-found", "warning", "a local data file or dataset directory does not exist",
         "A `jsonl(\"PATH\")` file or an `hf_disk(\"PATH\")` directory is missing (relative paths are resolved "
         "from the directory of the spec file that names them; the note gives the resolved path). Where the "
         "directory that should hold it exists, the help line suggests the closest name there. Where that "
         "directory is missing too, the sources of one spec file under the same missing folder are one warning, "
         "at the first of them, the others marked (a spec compiled away from its data, which lives on the "
         "cluster or is made later, gets one warning, not one a file), and the help suggests the closest folder "
         "where that names an existing file. It is a warning: `cascadec run` checks every data file again "
         "before the first stage."),
    Code("CAS321", "data-column-missing", "error", "a data row lacks a column that the spec maps or a stage needs",
         "The compiler reads the first non-empty line of each local `jsonl` file (only that line: files can be "
         "large) and every `inline([...])` row. A column mapped with `ROLE = \"COLUMN\"` must exist; without "
         "a mapping a row needs a `prompt` column (or a mapped `messages` column whose last user turn is the "
         "prompt), and rows that an `sft` stage trains on need a non-null `completion` or `answer` to train on "
         "(`runtime/data.py`, `runtime/stages/sft.py`). The help line suggests the closest column of the row, "
         "or the mapping to write."),
    Code("CAS322", "data-row-invalid", "error", "a data row the runtime cannot load",
         "The first non-empty line of a `jsonl` file must be one JSON object (not an array, a string or "
         "malformed JSON), the file must be UTF-8 text with at least one row, and a prompt column must hold a "
         "string. The message gives the file's line number."),
    Code("CAS323", "route-unused", "warning", "a route that no row of the local data takes",
         "A reward `route(field(...), ...)` or a distill stage's `teachers { by = field(...) }` routes rows by the "
         "value of a data field. When the data is local, the compiler reads its rows (up to 100,000 per source) "
         "and reports routes whose value no row has: usually a typo in the value, or the wrong field."),
    Code("CAS324", "row-without-route", "error", "rows of the local data whose field value has no route",
         "Every row must reach a reward or a teacher: a row whose field value has no route, when there is no "
         "`default` route, would get no reward or teacher at run time and be left out of training (counted as "
         "`unrouted` in the metrics). Add a route for the value or a `default` route."),
    Code("CAS325", "checkpoint-not-found", "error",
         "a local base model or named checkpoint is not where the spec says",
         "A checkpoint in `checkpoints = { ... }` that is a local directory or a stage of another run must exist "
         "when compiling: its content hash goes into the hashes of the stages that start from it or distil from "
         "it, so that a changed checkpoint re-runs them. A base model written as a path (`model(\"./dir\")`: "
         "starting with `./`, `../`, `/` or `~`, resolved from the spec's directory) must hold a `config.json`, "
         "as the runtime loads it from there (so must a reward's model written as a path, resolved the same "
         "way: `reward_model(\"./rm\")`, `judge(\"./j\")`), and a `tokenizer = \"./dir\"` must hold a tokenizer "
         "(`tokenizer.json`, `tokenizer_config.json`, `tokenizer.model`, `spiece.model`, `vocab.json` or "
         "`vocab.txt`). Any other name, and the model of a `reward_model(...)` or `judge(...)` reward not "
         "written as a path, is a hub id, `name` or `org/name`, as `huggingface_hub` validates it: "
         "letters, digits, `-`, `_` and `.`, neither starting nor ending with `-` or `.`, without `--` or `..`, "
         "at most 96 characters a part; `org/name/extra` or `org/na me` is no hub repository and no local "
         "directory either (write a local one as `./org/name/extra`). Whether a hub id exists is checked when the "
         "stage loads it."),
    Code("CAS326", "teacher-tokenizer-differs", "error", "a teacher and its student use different tokenizers",
         "On-policy distillation scores the student's own token ids with the teacher, so both must tokenize "
         "identically: the same vocabulary ids and special tokens. A model whose embedding matrix is padded to "
         "a multiple of 64 or 128 rows is fine; the tokenizers are compared, not the matrices. Checked when both "
         "tokenizers are local directories (tokenizer.json), and again when the stage starts."),
    Code("CAS327", "gym-config-invalid", "error", "reasoning-gym rejects a generator's arguments",
         "`cascadec lint` builds every `gym(...)` data source with a couple of items, as the run would, so that "
         "values reasoning-gym refuses (for example `min_terms` above `max_terms`) are found before the run. "
         "The message is reasoning-gym's own; the caret points at the keyword it names."),
    Code("CAS328", "data-unbuildable", "error", "the run could not load a local data source's rows",
         "`cascadec lint` and `cascadec run` build each local data source from its first 1000 rows, as the "
         "runtime loads it: every `jsonl` line must be a JSON object, every row needs a prompt (and, for an SFT "
         "stage, a `completion` or `answer`) and each mapped column, and an `hf_disk(...)` folder must be a "
         "dataset saved by `datasets` (or a folder of arrow files) with the split named. The first row is "
         "checked on every compile (CAS321, CAS322); this check finds the bad rows after it. The message names "
         "the first bad row (file:line for jsonl) and a note lists more."),
    Code("CAS329", "tiny-config-invalid", "error", "a `tiny(...)` model whose config transformers would not build",
         "`tiny(NAME, key = value, ...)` builds a random-init model from a transformers config: NAME must be a "
         "transformers model type with a causal-LM class (`llama`, `qwen2`), each key an attribute of its config "
         "class (`hidden_size`, `num_hidden_layers`), each size a positive whole number, and the config must pass "
         "the class's own checks (the attention heads must divide `hidden_size`, the key-value heads the heads). "
         "Keys left out take small defaults (hidden size 64, 2 layers, 4 heads). With the default byte-level "
         "tokenizer the model is also built and run on 2 rows of 8 tokens: its vocabulary must hold the "
         "tokenizer's 259 tokens, its logits must be finite, and it must be causal (a position's output may not "
         "depend on later tokens: `tiny(bert)` needs `is_decoder = true`). A composite type such as `gemma3` "
         "keeps its sizes in a sub-config; write its text type, `gemma3_text`. Values transformers accepts but "
         "that break training later are refused too: a RoPE base (`rope_theta`) or a norm epsilon (`rms_norm_eps`, "
         "`layer_norm_eps`) that is not positive, a dropout outside [0, 1), a `rope_scaling` factor below 1, a "
         "setting transformers says it ignores (`rope_scaling = {factor = 2.0}` without a `rope_type` that uses "
         "it), and a `max_position_embeddings` shorter than the longest row a stage or an eval may feed the model "
         "(`max_seq`, `max_prompt + max_response`, an eval's `max_tokens` plus its prompt, cut to a stage's "
         "`max_prompt`; without one, the prompt's length is unknown at lint and `max_tokens` alone counts). "
         "A head whose rotary part is an odd number of dimensions wide is refused for every RoPE model type, and "
         "a `rope_scaling` record must name a `rope_type` transformers has and every entry that type requires. "
         "A tiny model is a stand-in for tests, so it may not be larger than the largest real LLMs: at most 128 "
         "layers (Llama 3.1 405B has 126), 512 experts of a kind a layer (Qwen3-Next has 512; a model type whose "
         "own default is larger keeps it) and 2e12 parameters (Kimi K2 has about 1e12), counted from the config "
         "before anything is built. Every independent problem of a call is reported. `cascadec lint` and "
         "`cascadec run` check this before anything runs."),
    Code("CAS330", "tiny-config-doubtful", "warning", "a `tiny(...)` setting transformers warns about but uses",
         "While building a `tiny(...)` config, transformers logged a warning about a key of the spec that it still "
         "uses as written, e.g. a YaRN `rope_scaling` factor that does not match the ratio of "
         "`max_position_embeddings` to `original_max_position_embeddings` (told in the spec's words, with the "
         "factor and the original context that agree). The model runs, perhaps not as meant. "
         "Warnings that transformers ignores a setting or finds a value invalid are CAS329 errors instead; lines "
         "about no key of the spec are not shown."),
    Code("CAS331", "reserved-name", "error", "a stage, domain, eval or checkpoint named with a reserved word",
         "Names follow `[A-Za-z_][A-Za-z0-9_]*` but may not be a reserved word of the language (`cascade`, "
         "`import`, `domain`, `stage`, `defaults`, `resources`, `teachers`, `eval`, `until`, `on`, `or`, `by`, "
         "`from`): the parser reads those as keywords in some places (`best(by, ...)`, `teachers { by = ... }`), "
         "and `cascadec fmt`, error recovery and editors always do. A few names mean something already: a stage "
         "or checkpoint named `base` (the base model), a domain named `default` (the fallback route of "
         "`teachers { }`) or `train` (`train.METRIC` in a stop rule reads a training metric). Rename it; the help "
         "line suggests a name."),
    Code("CAS400", "batch-algebra", "error", "the batch does not split evenly over the devices",
         "Each optimizer step processes `prompts_per_step × rollouts_per_prompt` sequences (sft: "
         "`batch_size`) split over `nodes × gpus` data-parallel ranks in micro-batches of `micro_batch`. "
         "The total must be divisible by `nodes × gpus × micro_batch`; the help lists nearby valid values, each "
         "of which passes lint itself: a `micro_batch` that divides a rank's share of the step, and the nearest "
         "`prompts_per_step` (`batch_size`) below and above that split, never more than the training rows allow "
         "(CAS421) nor a step of more than 1,000,000 sequences (CAS415); when no row count fits, the nearest "
         "`rollouts_per_prompt` that splits."),
    Code("CAS401", "stage-never-runs", "error", "a stage can never run a step",
         "`steps = 0`, or a stop rule such as `steps >= 0` that holds before the first step, means the stage "
         "does nothing, yet its children would start from its untouched parent. Remove the stage or give it steps."),
    Code("CAS402", "degenerate-group", "error", "GRPO with fewer than 2 rollouts per prompt",
         "GRPO's advantage is the reward minus the group mean divided by the group standard deviation; with "
         "one rollout per prompt every advantage is zero and nothing is learned."),
    Code("CAS403", "thinking-mode-template", "warning", "a thinking mode with an empty template prefix",
         "The stage sets `mode = thinking` or `no_thinking` but the chat template's prefix for that mode is "
         "empty, so the mode has no effect on the prompt."),
    Code("CAS404", "until-without-evals", "warning", "an eval-based stop rule that is never evaluated",
         "The stage has a stop rule on an eval but `eval_every = 0`, so evals run only at the end of the "
         "stage and the rule can never stop it early."),
    Code("CAS405", "sampled-eval-at-zero-temperature", "warning", "an `avg@K` or `pass@K` eval with temperature 0",
         "With `temperature = 0` decoding is greedy, so the K samples of `avg@K` / `pass@K` are identical and "
         "cost K times the compute of `pass@1`. Set a sampling temperature (the papers use 0.6 to 1.0)."),
    Code("CAS406", "unreachable-stop-rule", "error", "a stop rule compares with a score the eval can never reach",
         "pass@K scores and the rewards of `math_verify`, `gym`, `exact`, `choice`, `instructions`, `unit_tests` and "
         "`json_schema` lie in [0, 1] (a `code_switch_penalty` can lower the floor), so a rule such as "
         "`math.gsm >= 5` never stops the stage and `math.gsm >= 0` stops it at once. A relative rule "
         "`D.E >= F * teacher(D).E` needs a factor F > 0. Scores of `reward_model`, `judge` and `py` rewards are "
         "not bounded and are not checked."),
    Code("CAS407", "greedy-rollouts", "warning", "a GRPO stage samples its rollouts at temperature 0",
         "With `temperature = 0` decoding is greedy, so the rollouts of a group are identical, their rewards "
         "equal, and every group-normalised advantage is zero: the stage learns nothing. Sample at a temperature "
         "near 1.0, as both papers do."),
    Code("CAS408", "warmup-longer-than-stage", "warning", "the learning-rate warm-up is longer than the stage",
         "`warmup = N` steps of linear warm-up with N >= `steps` means the stage never trains at its peak "
         "learning rate, and a decaying schedule never starts to decay. Shorten the warm-up or raise `steps`."),
    Code("CAS409", "model-states-exceed-gpu-memory", "warning", "a stage's model states alone exceed `memory_per_gpu`",
         "A lower bound on memory per GPU: weights, gradients and AdamW states (16 bytes per parameter in mixed "
         "precision, ZeRO paper §3.1) divided over the data-parallel ranks as the `strategy` shards them, plus "
         "frozen reference or teacher models. Activations, the KV cache and the rollout engine come on top. It is "
         "checked when `resources { memory_per_gpu = ... }` is set and the parameter count is known: a packaged "
         "model, or a model name that states it (`Qwen3-8B`)."),
    Code("CAS410", "memory-estimate-exceeds-gpu", "warning", "a stage's estimated memory per GPU exceeds the GPU's",
         "`cascadec plan` estimates each stage's memory per GPU (`cascadec/memory_estimate.py`): model states as "
         "the strategy shards them, activations of one micro-batch (with or without `gradient_checkpointing`), "
         "the log-prob chunk, the rollout KV cache and frozen models. The GPU's memory comes from "
         "`resources { gpu = h100 }` (H100, H200, A100, L40S, ...) or `memory_per_gpu`, which overrides it. "
         "Checked when the model's shape is known: a packaged model, a local checkpoint, a `tiny(...)` config "
         "or a model of the table in `memory_estimate.py`."),
    Code("CAS411", "option-without-effect", "error", "a key that the other settings make inert",
         "Some options act only with others: `sampling_budget` and `on_no_signal` need `dynamic_filter = on`; "
         "`kl_estimator` and `kl_in` need `kl > 0`; `is_band` needs `is_correction` (and `tis` uses only its "
         "upper edge); `micro_batch` is unused with `max_tokens_per_gpu`; `clip` and `dual_clip` never act with "
         "one update per rollout batch (the ratio pi_theta / pi_old is then exactly 1); a domain's `decontaminate = on` "
         "needs an eval of that domain to drop training rows against. "
         "A key that would be ignored is an error, so that a spec says what runs."),
    Code("CAS412", "teacher-temperature-unset", "warning",
         "a distill stage samples at a temperature other than 0 and 1 without `teacher_temperature`",
         "Teachers are scored at `teacher_temperature` (default 1.0, the teacher's own distribution, which MOPD's "
         "reverse KL and GKD assume), not at the student's sampling temperature. When the stage samples at another "
         "temperature, say which one the teachers should use. A greedy stage (`temperature = 0`) is not warned "
         "about: it has no sampling distribution that a teacher temperature could match (a teacher at 0 would be "
         "one-hot), so the default 1.0 stands."),
    Code("CAS413", "overlong-reward-rule-in-distill", "error", "a distill stage sets a reward overlong rule",
         "`overlong = penalty` and `overlong = soft(...)` change a rollout's reward, and a distill stage has no "
         "reward: its loss comes from the teachers' log-probs. Use `overlong = filter` to leave truncated "
         "rollouts out of the loss, or `none`."),
    Code("CAS415", "implausible-value", "warning", "a value in range but almost surely a typo",
         "A peak learning rate above 1e-2, more than 1,000,000 steps, a sampling temperature (rollouts or "
         "evals) above 2, more than 1,024 rollouts per prompt (16 times DeepSeekMath's GRPO group of 64) or more "
         "than 1,000,000 sequences in one step (about 500 times a Nemotron-Cascade step of 128 prompts × 16 "
         "rollouts; the runtime holds every sequence of a step in memory at once) is allowed but rarely meant: "
         "`lr = 3e5` for `3e-5` trains to NaN at the first step. Fix the value, or keep it if it is deliberate."),
    Code("CAS416", "gpu-roles-exceed-node", "error", "a stage's GPU roles need more GPUs than a node has",
         "`resources` can give served roles their own GPUs on each node: `teacher_servers = { sft = vllm(gpus = 2) }`, "
         "the rollout server (`rollout = vllm(gpus = 2)`) and the training ranks (`gpus`). Their sum must fit in "
         "`node_gpus`, the GPUs a node has, which must be set once a served role takes GPUs."),
    Code("CAS417", "server-memory-does-not-fit", "error", "a served model does not fit in its memory share",
         "A vLLM server holds its model's weights (2 bytes per parameter in bf16, divided by `tensor_parallel`) "
         "and its KV cache inside `memory` (vLLM's `gpu_memory_utilization`) times the card's memory (`gpu` or "
         "`memory_per_gpu`); a rollout server (`rollout = vllm(gpus = 2)`) holds the policy's weights the same "
         "way. A colocated rollout engine (`rollout = vllm(memory = 0.3)`) shares the training GPUs, "
         "so the training estimate and the engine's share must fit together (TRL lowered its colocated default "
         "from 0.9 to 0.3 after out-of-memory reports)."),
    Code("CAS418", "role-not-supported", "error", "a GPU role or served model the runtime cannot run",
         "The runtime trains data-parallel only (no tensor-parallel training) and scores served teachers by the "
         "log-probs of the sampled tokens: a served teacher needs a `distill` stage with `loss = mopd` and "
         "`teacher_temperature = 1.0`. A rollout server is the stage's engine (`engine = hf` beside it is an "
         "error), and the colocated engine (`rollout = vllm(memory = 0.3)`) takes only `memory`. Anything else "
         "would be silently ignored, so it is an error."),
    Code("CAS419", "served-teacher-unknown", "error", "`teacher_servers` names a checkpoint that is not a teacher",
         "Each name in `teacher_servers` must be a teacher checkpoint of the stage (a stage, `base`, a named "
         "checkpoint or a `best(...)` candidate in its `teachers` block); put `teacher_servers` in the `resources` "
         "of the distill stage that reads it."),
    Code("CAS420", "distill-from-its-start", "warning", "every teacher of a distill stage is the stage's parent",
         "A distill stage learns how its teachers differ from the student. When every teacher it can resolve to "
         "(fixed teachers and `best(...)` candidates) is the checkpoint it starts from, scored at the student's "
         "temperature, every divergence it can minimise is 0 with a zero gradient: the run takes no step and "
         "keeps the parent as the stage's checkpoint. The same happens at run time when `best(...)` picks the "
         "parent for every route."),
    Code("CAS421", "step-repeats-rows", "warning", "a step draws more rows of a domain than its training set has",
         "A step draws `prompts_per_step` (sft, offline_distill: `batch_size`) rows from its domains, each domain "
         "at least `floor(weight × rows)` of them, without replacement from a permutation of its training set "
         "that starts over inside the step when the set runs out. A step that needs more rows of a domain than "
         "the domain has holds the same rows again: a GRPO prompt in two groups, an SFT row counted twice, never "
         "meant. It is checked where the row count is known at lint: `inline(...)` rows and `gym(...)` with "
         "`size`, for a batch the spec writes (in the stage or its `defaults`; a default batch on a few inline test "
         "rows is left alone); decontamination and length filters only drop rows, so a stage that fits is never "
         "flagged. "
         "The help gives the largest row count that draws no row twice."),
    Code("CAS500", "reward-contract", "error", "a domain's reward breaks the reward contract",
         "`cascadec lint` builds each domain's reward with the runtime's reward library and calls it on a tiny "
         "batch: it must build from the spec's arguments and return one finite float per completion. The "
         "message says which part failed; the label points at the reward in the spec."),
    Code("CAS501", "reward-expects-prefilled-text", "warning", "a format reward expects text the prompt pre-fills",
         "`lint --check-rewards` renders the chat template's generation prompt and the stage's mode prefix. When "
         "they pre-fill `<think>` (Qwen3-style templates, `mode = thinking`), no completion starts with it; a "
         "format reward that scores completions higher with it in front would never give its reward."),
    Code("CAS502", "template-not-prefix-stable", "warning", "the chat template is not prefix-stable across turns",
         "For multi-turn rows, rendering turns 1..k must be a prefix of rendering turns 1..k+1, or SFT cannot cut "
         "the assistant turns out of the conversation. Some templates drop earlier turns' reasoning; use one "
         "that does not, or single-turn rows. Checked by `lint --check-rewards` on the first rows."),
    Code("CAS503", "reward-checked-on-synthetic-rows", "warning", "a reward was checked on made-up rows",
         "`lint --check-rewards` runs each domain's reward on the first rows of its training data. When the data "
         "cannot be loaded where lint runs (a hub dataset not in the local cache, a file that exists only on "
         "the cluster, a row the runtime rejects), it falls back to synthetic rows whose columns hold "
         "placeholder values: the reward builds and returns floats, but whether it works on the real columns "
         "is not known until the run. The message says why the data could not be loaded."),
    Code("CAS999", "internal-error", "error", "the compiler hit a bug",
         "This is a bug in cascadec, not in your spec. Please report it with the spec that triggered it."),
)

CODES: dict[str, Code] = {c.code: c for c in _TABLE}


def make(code: str, message: str, span: Span | None = None, *, label: str = "",
         secondary: tuple[tuple[Span, str], ...] = (), notes: tuple[str, ...] = (),
         help: str | None = None) -> Diagnostic:
    """Build a `Diagnostic` for a registered ``code`` (its name and severity come from the table).

    Raises KeyError for an unregistered code (a bug in the caller).
    """
    entry = CODES[code]
    labels: list[Label] = []
    if span is not None:
        labels.append(Label(span, label, True))
    labels.extend(Label(s, text, False) for s, text in secondary)
    return Diagnostic(code=code, name=entry.name, severity=entry.severity, message=message,
                      labels=tuple(labels), notes=notes, help=help)
