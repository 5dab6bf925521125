"""Features of a request for the learned router: dense structure features plus hashed word / character n-grams.

Pure Python and deterministic (CRC32 hashing, not Python's salted `hash`), so weights trained in one process
score identically in another. Few-shot prompts (worked examples before the real question, as in the
RouterBench ARC and Winogrande rows) are reduced to the real question first: the examples say little about
how hard the question is, and their words would drown its own.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..analyzer import features as analyzer_features
from ..analyzer import split_examples
from ..analyzer import task_type as analyzer_task_type
from ..messages import has_image, last_user_index, scan_window, text_of
from ..settings import TASK_TYPES

# Hashed feature space: 2**17 buckets keeps shipped weights small (float16, a few hundred KB compressed).
HASH_BITS = 17
HASH_DIM = 1 << HASH_BITS
_MASK = HASH_DIM - 1
# Only the first characters of a long question are hashed: enough to know what it is, and bounded in time.
MAX_HASH_CHARS = 4000

ANALYZER_KEYS: tuple[str, ...] = (
    "length", "reasoning", "multistep", "code_presence", "code_ask", "math", "numbers", "tool_chaining",
    "long_output", "short_output", "constraints", "conversation_depth", "images", "context_length", "questions",
    "research", "creative", "extraction", "choices",
)
EXTRA_KEYS: tuple[str, ...] = (
    "log_chars", "log_chars_full", "shots", "n_options", "two_options", "blank", "digit_share", "upper_share",
    "code_fence", "lines", "turns", "system", "answer_cue", "question_mark", "bias",
)
DENSE_KEYS: tuple[str, ...] = ANALYZER_KEYS + EXTRA_KEYS + tuple(f"task_{t}" for t in TASK_TYPES)

# Linear on any text: no repetition can overlap another without a bound (see analyzer), and the text is
# bounded first (scan_window).
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
_OPTION = re.compile(r"(?m)^[ \t]{0,64}(?:\(?[A-Ja-j][.):]|Option [A-J]\b)\s{0,16}\S")
_ANSWER_CUE = re.compile(r"(?i)\banswer\s{0,16}:\s{0,16}$")
_BLANK = re.compile(r"(?<!\w)_(?!\w)")


@dataclass
class RequestFeatures:
    """Dense values (in DENSE_KEYS order), hashed bucket -> value, the task type and the text used."""

    dense: list[float]
    hashed: dict[int, float]
    task_type: str
    focus: str
    analyzer: dict[str, float]
    shots: int
    # Sentence embedding of `focus` (384 floats), set only for weights with embedding heads.
    emb: np.ndarray | None = None


def focus_text(request: str) -> tuple[str, int]:
    """The real question of a few-shot prompt and the number of worked examples (analyzer.split_examples, from
    one example on)."""
    return split_examples(request, min_examples=1)


def _bucket(s: str) -> int:
    return zlib.crc32(s.encode("utf-8")) & _MASK


@lru_cache(maxsize=50_000)
def _word_buckets(w: str) -> tuple[int, ...]:
    """The word itself plus its character trigrams (with boundaries), so unseen inflections still match."""
    out = [_bucket("w:" + w)]
    if len(w) > 3 and w.isalpha():
        padded = f"<{w}>"
        out += [_bucket("c:" + padded[i:i + 3]) for i in range(len(padded) - 2)]
    return tuple(out)


def _hashed(text: str) -> dict[int, float]:
    words = _WORD.findall(text[:MAX_HASH_CHARS].lower())
    counts: dict[int, float] = {}
    for w in set(words):
        for b in _word_buckets(w):
            counts[b] = counts.get(b, 0.0) + 1.0
    for a, b in set(zip(words, words[1:], strict=False)):
        k = _bucket("b:" + a + " " + b)
        counts[k] = counts.get(k, 0.0) + 1.0
    norm = math.sqrt(sum(v * v for v in counts.values())) or 1.0
    return {k: v / norm for k, v in counts.items()}


def extract(messages: list[dict[str, Any]]) -> RequestFeatures:
    """Features of validated OpenAI-shape chat messages (the last user message is the request)."""
    i = last_user_index(messages)
    full = text_of(messages[i])
    request = scan_window(full)  # bounded: a megabyte message costs what ~32 KB do
    focus, shots = focus_text(request)
    # Characters of the real question in the whole message (the window reads only its two ends).
    focus_chars = len(focus) + len(full) - len(request)
    fmsgs = [*messages[:i], {"role": "user", "content": focus}]
    if has_image(messages[i]):
        fmsgs[-1] = messages[i]
    af, _req, _vision = analyzer_features(fmsgs)
    tt = analyzer_task_type(af)
    n = max(1, len(focus))
    options = len(_OPTION.findall(focus))
    extra = {
        "log_chars": math.log1p(focus_chars) / 8,
        "log_chars_full": math.log1p(len(full) + sum(len(text_of(m)) for m in messages[:i])) / 10,
        "shots": min(shots, 10) / 5,
        "n_options": min(options, 10) / 5,
        "two_options": 1.0 if options == 2 else 0.0,
        "blank": 1.0 if _BLANK.search(focus) else 0.0,
        "digit_share": min(1.0, 5 * sum(map(str.isdigit, focus)) / n),
        "upper_share": min(1.0, 5 * sum(map(str.isupper, focus)) / n),
        "code_fence": 1.0 if "```" in focus else 0.0,
        "lines": math.log1p(focus.count("\n")) / 4,
        "turns": min(sum(1 for m in messages[:i] if m.get("role") == "user"), 10) / 5,
        "system": 1.0 if any(m.get("role") in ("system", "developer") for m in messages) else 0.0,
        "answer_cue": 1.0 if _ANSWER_CUE.search(focus.rstrip()[-200:]) else 0.0,
        "question_mark": 1.0 if "?" in focus else 0.0,
        "bias": 1.0,
    }
    dense = [af[k] for k in ANALYZER_KEYS] + [extra[k] for k in EXTRA_KEYS]
    dense += [1.0 if tt == t else 0.0 for t in TASK_TYPES]
    return RequestFeatures(dense=dense, hashed=_hashed(focus), task_type=tt, focus=focus, analyzer=af, shots=shots)
