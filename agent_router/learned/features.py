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
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..analyzer import context_chars, split_examples, text_features, user_turns
from ..analyzer import features as analyzer_features
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
    """Dense values (in DENSE_KEYS order), the hashed n-grams, the task type and the text used.

    The hashed n-grams are two arrays in the order their buckets were first seen: `buckets` (int64) and
    `values` (float64, L2-normed counts); `hashed` gives them as a dict bucket -> value."""

    dense: list[float]
    buckets: np.ndarray
    values: np.ndarray
    task_type: str
    focus: str
    analyzer: dict[str, float]
    shots: int
    # Sentence embedding of `focus` (384 floats), set only for weights with embedding heads.
    emb: np.ndarray | None = None
    _hashed: dict[int, float] | None = field(default=None, init=False, repr=False, compare=False)
    _dense: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def hashed(self) -> dict[int, float]:
        """Hashed bucket -> value, in `buckets` order (made on first use)."""
        if self._hashed is None:
            self._hashed = dict(zip(self.buckets.tolist(), self.values.tolist(), strict=True))
        return self._hashed

    def dense_array(self, dtype: Any) -> np.ndarray:
        """`dense` as an array of `dtype` (the last one made is kept)."""
        a = self._dense
        if a is None or a.dtype != dtype:
            a = self._dense = np.asarray(self.dense, dtype=dtype)
        return a


def focus_text(request: str) -> tuple[str, int]:
    """The real question of a few-shot prompt and the number of worked examples (analyzer.split_examples, from
    one example on)."""
    return split_examples(request, min_examples=1)


def _bucket(s: str) -> int:
    return zlib.crc32(s.encode("utf-8", "surrogatepass")) & _MASK  # a lone surrogate hashes, never raises


_WORD_BUCKETS: dict[str, tuple[int, ...]] = {}
_WORD_BUCKETS_MAX = 50_000


def _word_buckets(w: str) -> tuple[int, ...]:
    """The word itself plus its character trigrams (with boundaries), so unseen inflections still match.
    Remembered per word (bounded)."""
    got = _WORD_BUCKETS.get(w)
    if got is None:
        out = [_bucket("w:" + w)]
        if len(w) > 3 and w.isalpha():
            padded = f"<{w}>"
            out += [_bucket("c:" + padded[i:i + 3]) for i in range(len(padded) - 2)]
        if len(_WORD_BUCKETS) >= _WORD_BUCKETS_MAX:
            _WORD_BUCKETS.clear()
        got = _WORD_BUCKETS[w] = tuple(out)
    return got


def hashed_features(text: str, low: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Word, character-trigram and word-bigram buckets of `text`'s first MAX_HASH_CHARS characters, with their
    L2-normed counts, in the order the buckets are first seen (as RequestFeatures holds them). `low`:
    `text.lower()` when the caller has it."""
    if low is None or len(text) > MAX_HASH_CHARS:
        low = text[:MAX_HASH_CHARS].lower()
    words = _WORD.findall(low)
    seq: list[int] = []
    add = seq.extend
    memo = _WORD_BUCKETS
    for w in set(words):
        add(memo.get(w) or _word_buckets(w))
    crc = zlib.crc32
    seq += [crc(f"b:{a} {b}".encode("utf-8", "surrogatepass")) & _MASK
            for a, b in set(zip(words, words[1:], strict=False))]
    n = len(seq)
    if n and len(set(seq)) == n:  # no bucket twice (most short texts): every count is 1
        return np.array(seq, dtype=np.int64), np.full(n, 1.0 / math.sqrt(n))
    counts = Counter(seq)
    n = len(counts)
    buckets = np.fromiter(counts.keys(), dtype=np.int64, count=n)
    values = np.fromiter(counts.values(), dtype=np.float64, count=n)
    # Whole counts: their squares sum exactly in any order.
    norm = math.sqrt(float(values @ values)) or 1.0
    return buckets, values / norm


_DIGITS = b"0123456789"
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def digits_and_capitals(text: str) -> tuple[int, int]:
    """How many characters of `text` are digits (str.isdigit) and capitals (str.isupper). ASCII text is
    counted by deleting the ASCII digits and capitals (the only ones it can hold) from its bytes."""
    if text.isascii():
        b = text.encode("ascii")
        return len(b) - len(b.translate(None, _DIGITS)), len(b) - len(b.translate(None, _UPPER))
    return sum(map(str.isdigit, text)), sum(map(str.isupper, text))


# Requests longer than this get no `features_key` (not kept: memory). What a kept request holds is ~5 KB for a
# short question, ~24 KB at this length (its text, features and n-grams).
KEY_MAX_CHARS = 4_000


class MessagesRead(NamedTuple):
    """What `extract` reads of the messages besides the request's own message (`index`): the request's text,
    and of the messages before it their characters, user turns and whether one has an image; whether any
    message is a system (or developer) message."""

    index: int
    full: str
    before_chars: int
    before_users: int
    image_before: bool
    system: bool


def read_messages(messages: list[dict[str, Any]]) -> MessagesRead:
    """What `extract` and `features_key` read of the messages (made once when a caller needs both)."""
    i = last_user_index(messages)
    before = messages[:i]
    return MessagesRead(i, text_of(messages[i]), context_chars(before), user_turns(before),
                 any(has_image(m) for m in before), any(m.get("role") in ("system", "developer") for m in messages))


def features_key(messages: list[dict[str, Any]], read: MessagesRead | None = None) -> tuple[Any, ...] | None:
    """Everything `extract(messages)` reads, as a hashable key: equal keys give equal features. None for a
    request with an image or longer than KEY_MAX_CHARS. What follows the last user message (an agent's tool
    calls and results) is not read, so each step of a tool loop has the same key as the question it answers.
    `read`: `read_messages(messages)`, to hand on to `extract`."""
    r = read if read is not None else read_messages(messages)
    if has_image(messages[r.index]) or len(r.full) > KEY_MAX_CHARS:
        return None
    return r[1:]


def extract(messages: list[dict[str, Any]], read: MessagesRead | None = None) -> RequestFeatures:
    """Features of validated OpenAI-shape chat messages (the last user message is the request). `read`:
    `read_messages(messages)` when the caller has it (`features_key` made it)."""
    r = read if read is not None else read_messages(messages)
    i, full = r.index, r.full
    last = messages[i]
    request = scan_window(full)  # bounded: a megabyte message costs what ~32 KB do
    focus, shots = focus_text(request)
    # Characters of the real question in the whole message (the window reads only its two ends).
    focus_chars = len(focus) + len(full) - len(request)
    before = messages[:i]
    before_chars, before_users = r.before_chars, r.before_users
    low = focus.lower()
    if has_image(last):  # the analyzer reads the message with its image (and its own few-shot split)
        af, _req, _vision = analyzer_features([*before, last])
    else:
        # The analyzer's features of the focus as a message of its own: already bounded (scan_window), and
        # nothing more to split (the split above took every worked example), so analyzer.features would
        # find (focus, 0 shots, nothing unread).
        af = text_features(focus, low, 0, 0, before_chars, before_users, r.image_before)
    tt = analyzer_task_type(af)
    n = max(1, len(focus))
    options = len(_OPTION.findall(focus))
    digits, capitals = digits_and_capitals(focus)
    extra = {
        "log_chars": math.log1p(focus_chars) / 8,
        "log_chars_full": math.log1p(len(full) + before_chars) / 10,
        "shots": min(shots, 10) / 5,
        "n_options": min(options, 10) / 5,
        "two_options": 1.0 if options == 2 else 0.0,
        "blank": 1.0 if "_" in focus and _BLANK.search(focus) else 0.0,
        "digit_share": min(1.0, 5 * digits / n),
        "upper_share": min(1.0, 5 * capitals / n),
        "code_fence": 1.0 if "```" in focus else 0.0,
        "lines": math.log1p(focus.count("\n")) / 4,
        "turns": min(before_users, 10) / 5,
        "system": 1.0 if r.system else 0.0,
        # The cue ends the stripped text: a text not ending with ":" has none.
        "answer_cue": 1.0 if (tail := focus.rstrip()[-200:]).endswith(":") and _ANSWER_CUE.search(tail) else 0.0,
        "question_mark": 1.0 if "?" in focus else 0.0,
        "bias": 1.0,
    }
    dense = [af[k] for k in ANALYZER_KEYS] + [extra[k] for k in EXTRA_KEYS]
    dense += [1.0 if tt == t else 0.0 for t in TASK_TYPES]
    buckets, values = hashed_features(focus, low)
    return RequestFeatures(dense=dense, buckets=buckets, values=values, task_type=tt, focus=focus, analyzer=af,
                           shots=shots)

