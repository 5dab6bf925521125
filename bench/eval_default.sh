#!/bin/bash
# The table in docs/routing.md: the built-in default router beside the heuristic, the learned router's two
# objectives, random, length and the oracle on every dev file (bash bench/eval_default.sh).
# How sure the lead over random is (folds, halves, paired bootstrap): python bench/default_margin.py FILE --models M
B=${BENCH:-../shared/bench}  # from the repository root: ../shared/bench
AR=${AR:-agent-router}
# `analyzer` under settings with learned routing off: the heuristic, the default before this one.
OFF=$(mktemp) && echo '{"learned": {"enabled": false}}' > "$OFF" && trap 'rm -f "$OFF"' EXIT
R="--router default --router analyzer --router learned --router learned_cost --settings $OFF"
run() { echo "## $1 $2"; $AR eval "$B/$1" --models "$2" $R; echo; }
run routing/alpacaeval1_dev.jsonl llama-2-7b-chat-hf,gpt4_1106_preview
run routing/alpacaeval1_dev.jsonl llama-2-7b-chat-hf,gpt-3.5-turbo-1106,gpt4_1106_preview
run routing/routellm_mmlu_gsm8k_dev.jsonl mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview
run routing/routerbench_train_dev.jsonl mistralai/mixtral-8x7b-chat,gpt-4-1106-preview
run routing/routerbench_train_dev.jsonl mistralai/mistral-7b-chat,mistralai/mixtral-8x7b-chat,gpt-4-1106-preview
run answers/gsm8k_dev_answers.jsonl mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview
