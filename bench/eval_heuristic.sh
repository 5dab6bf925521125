#!/usr/bin/env bash
# The heuristic analyzer on every routing-eval dev file and model set of ../shared/bench/README.md.
set -euo pipefail
B="${BENCH_ROWS:-$(dirname "$0")/../../shared/bench/routing}"
[ -d "$B" ] || { echo "error: $B: no such folder; set BENCH_ROWS to the routing-eval rows folder" >&2; exit 2; }
ar() { "${AGENT_ROUTER:-agent-router}" eval "$@"; echo; }
ar "$B/routellm_mmlu_gsm8k_dev.jsonl" --models mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview
ar "$B/routerbench_train_dev.jsonl" --models mistralai/mixtral-8x7b-chat,gpt-4-1106-preview
ar "$B/routerbench_train_dev.jsonl" --models mistralai/mistral-7b-chat,mistralai/mixtral-8x7b-chat,gpt-4-1106-preview
ar "$B/alpacaeval1_dev.jsonl" --models llama-2-7b-chat-hf,gpt4_1106_preview
ar "$B/alpacaeval1_dev.jsonl" --models llama-2-7b-chat-hf,gpt-3.5-turbo-1106,gpt4_1106_preview
