"""The learned quality model: one logistic head per reference model, over dense and hashed request features.

Each head predicts the probability that its model answers a request well. The router's score (need for the
strong model) is the predicted gain of the strongest head over the cheapest: P(strong good) - P(weak good),
mapped to 0..1. Weights are a small .npz (float16 hashed weights) loaded offline; inference is a handful of
numpy operations, well under a millisecond.
"""

from __future__ import annotations

import json
import math
import os
import threading
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AgentRouterError
from .features import DENSE_KEYS, HASH_BITS, MessagesRead, RequestFeatures, extract

FORMAT = "agent_router.learned/1"
WEIGHTS = "data/router_weights.npz"
EMB_WEIGHTS = "data/router_weights_emb.npz"


class WeightsError(AgentRouterError):
    """A learned-router weights file is missing, unreadable or of another format."""


@dataclass
class QualityModel:
    """Heads (cheapest first) with their weights; `meta` records what they were trained on."""

    heads: list[str]
    w_dense: np.ndarray  # (heads, len(DENSE_KEYS)) float32
    w_hash: np.ndarray  # (heads, HASH_DIM) float32
    meta: dict[str, Any] = field(default_factory=dict)
    # CRC32 of the ids of the rows trained on, so evaluation can tell seen rows from unseen ones.
    train_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))
    # Ridge weights over the dense features predicting log(cost) of the strongest model, when trained with costs.
    cost_dense: np.ndarray | None = None
    # (heads, 384) weights over the sentence embedding of the real question (learned.embeddings.minilm), if any.
    w_emb: np.ndarray | None = None
    # (len(train_ids), heads) out-of-fold probabilities of the training rows (row of train_ids[i]; NaN where an
    # id hash was shared by two rows), computed at training: calibrating or evaluating on the training rows
    # reads them instead of retraining k folds.
    oof: np.ndarray | None = None
    _rows: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def oof_probs(self, row_ids: list[str]) -> np.ndarray | None:
        """(n, heads) out-of-fold probabilities of these training rows, or None unless every one is known."""
        if self.oof is None or not row_ids:
            return None
        h = np.array([id_hash(r) for r in row_ids], dtype=np.uint32)
        i = np.searchsorted(self.train_ids, h)
        if (i >= len(self.train_ids)).any() or (self.train_ids[np.minimum(i, len(self.train_ids) - 1)] != h).any():
            return None
        out = self.oof[i].astype(np.float64)
        return None if np.isnan(out).any() else out

    # -- inference -----------------------------------------------------------------------------------------
    def logits(self, f: RequestFeatures) -> np.ndarray:
        z = self.w_dense @ f.dense_array(np.float32)
        if len(f.buckets):
            # The columns gathered as rows of the transposed copy: the same (heads, n) values in the same
            # (column-major) layout as self.w_hash[:, buckets], so the product is the same to the bit, at half the
            # gather's time.
            z = z + self._hash_rows().take(f.buckets, axis=0).T @ f.values.astype(np.float32)
        if self.w_emb is not None:
            if f.emb is None:
                raise WeightsError("these weights use sentence embeddings: build features with "
                                   "QualityModel.features(messages)")
            z = z + self.w_emb @ f.emb
        return z

    def _hash_rows(self) -> np.ndarray:
        """w_hash transposed, C-contiguous (HASH_DIM, heads): one bucket's weights of every head side by side
        (a copy made on first use; the weights are never modified after loading or training)."""
        if self._rows is None or self._rows[0] is not self.w_hash:
            self._rows = (self.w_hash, np.ascontiguousarray(self.w_hash.T))
        return self._rows[1]

    def features(self, messages: list[dict[str, Any]], read: MessagesRead | None = None) -> RequestFeatures:
        """Request features for these weights: with the sentence embedding of the real question when the
        weights have embedding heads (needs the embedding model; see agent_router.learned.embeddings.minilm).
        `read`: `features.read_messages(messages)` when the caller has it."""
        f = extract(messages, read)
        if self.w_emb is not None:
            from .embeddings.minilm import embedder

            f.emb = embedder(self.embedding_kind).encode(f.focus)
        return f

    @property
    def embedding_kind(self) -> str:
        """Which sentence embedding the embedding heads were trained on (weights from before the static
        embedding existed: the contextual encoder)."""
        return str(self.meta.get("embedding_kind", "contextual"))

    def predict(self, f: RequestFeatures) -> dict[str, float]:
        """Head name -> probability that the model answers well."""
        z = self.logits(f).tolist()
        return {h: 1.0 / (1.0 + math.exp(-v)) for h, v in zip(self.heads, z, strict=True)}

    def need(self, probs: dict[str, float]) -> float:
        """Need for the strongest model, 0..1: half of one plus the predicted gain over the cheapest."""
        return need_score(probs[self.heads[0]], probs[self.heads[-1]])

    @property
    def cost_weight(self) -> float:
        """How strongly the predicted cost discounts the predicted gain in the "cost" objective (score = gain x
        cost^-w): 1 is gain per dollar; weights trained before this option stored none and meant 1."""
        return float(self.meta.get("cost_weight", 1.0))

    def log_cost(self, f: RequestFeatures, head: tuple[np.ndarray, float] | None = None) -> float | None:
        """Predicted log(cost) of the strongest model for this request, relative to the training rows' mean,
        times `cost_weight`: the exponent the "cost" objective discounts the gain by. `head` (coefficients over
        DENSE_KEYS, centre) replaces the weights' own cost head, as a calibration refit on your costs does."""
        if head is None:
            if self.cost_dense is None:
                return None
            head = (self.cost_dense, float(self.meta.get("cost_ref", 0.0)))
        w, ref = head
        return self.cost_weight * (float(w @ f.dense_array(w.dtype)) - ref)

    def score(self, f: RequestFeatures, objective: str = "quality") -> float:
        probs = self.predict(f)
        p_w, p_s = probs[self.heads[0]], probs[self.heads[-1]]
        return objective_score(p_w, p_s, self.log_cost(f) if objective == "cost" else None)

    def score_messages(self, messages: list[dict[str, Any]], objective: str = "quality") -> float:
        return self.score(self.features(messages), objective)

    # -- persistence ---------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        meta = {**self.meta, "format": FORMAT, "heads": self.heads, "hash_bits": HASH_BITS,
                "dense_keys": list(DENSE_KEYS)}
        with open(path, "wb") as fh:
            np.savez_compressed(
                fh,
                w_dense=self.w_dense.astype(np.float32),
                w_hash=self.w_hash.astype(np.float16),
                meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8),
                train_ids=np.unique(self.train_ids.astype(np.uint32)),
                **({"cost_dense": self.cost_dense.astype(np.float32)} if self.cost_dense is not None else {}),
                **({"w_emb": self.w_emb.astype(np.float32)} if self.w_emb is not None else {}),
                **({"oof": self.oof.astype(np.float16)} if self.oof is not None else {}),
            )

    def seen(self, row_id: str) -> bool:
        """Whether a row with this id was among the training rows."""
        h = id_hash(row_id)
        i = int(np.searchsorted(self.train_ids, h))
        return i < len(self.train_ids) and int(self.train_ids[i]) == h

    @classmethod
    def load(cls, path: str | Path | None = None, embeddings: bool = False) -> QualityModel:
        """Load weights from `path`, or the packaged default weights (`embeddings`: the packaged weights with
        sentence-embedding heads)."""
        packaged = EMB_WEIGHTS if embeddings else WEIGHTS
        where = str(path) if path else f"agent_router/{packaged}"
        try:
            if path:
                fh = open(path, "rb")  # noqa: SIM115 - closed below
            else:
                fh = resources.files("agent_router").joinpath(packaged).open("rb")
        except OSError as e:
            raise WeightsError(f"{where}: cannot open learned-router weights ({e.strerror or e})") from None
        try:
            with fh, np.load(fh, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode("utf-8"))
                w_dense = z["w_dense"].astype(np.float32)
                w_hash = z["w_hash"].astype(np.float32)
                train_ids = z["train_ids"].astype(np.uint32) if "train_ids" in z else np.zeros(0, np.uint32)
                cost_dense = z["cost_dense"].astype(np.float32) if "cost_dense" in z else None
                w_emb = z["w_emb"].astype(np.float32) if "w_emb" in z else None
                oof = z["oof"].astype(np.float32) if "oof" in z else None
        except (ValueError, KeyError, OSError, json.JSONDecodeError) as e:
            raise WeightsError(f"{where}: not a learned-router weights file ({e})") from None
        if meta.get("format") != FORMAT:
            raise WeightsError(f"{where}: format {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("hash_bits") != HASH_BITS or meta.get("dense_keys") != list(DENSE_KEYS):
            raise WeightsError(f"{where}: trained with other features (hash_bits {meta.get('hash_bits')}); retrain "
                               "with `agent-router train`")
        heads = list(meta["heads"])
        if w_dense.shape != (len(heads), len(DENSE_KEYS)) or w_hash.shape != (len(heads), 1 << HASH_BITS):
            raise WeightsError(
                f"{where}: weight shapes {w_dense.shape}, {w_hash.shape} do not match {len(heads)} heads")
        if w_emb is not None and w_emb.shape[0] != len(heads):
            raise WeightsError(f"{where}: embedding weights {w_emb.shape} do not match {len(heads)} heads")
        if embeddings and w_emb is None:
            raise WeightsError(f"{where}: learned.embeddings is on but these weights have no embedding heads; "
                               "retrain with `agent-router train --embeddings static`")
        if not bool((train_ids[1:] > train_ids[:-1]).all()):  # saved sorted and unique (np.unique imports numpy.ma)
            train_ids = np.unique(train_ids)
        if oof is not None and oof.shape != (len(train_ids), len(heads)):
            raise WeightsError(f"{where}: out-of-fold probabilities {oof.shape} do not match "
                               f"{len(train_ids)} training rows x {len(heads)} heads")
        return cls(heads=heads, w_dense=w_dense, w_hash=w_hash, meta=meta, train_ids=train_ids,
                   cost_dense=cost_dense, w_emb=w_emb, oof=oof)


def id_hash(row_id: str) -> int:
    return zlib.crc32(str(row_id).encode("utf-8"))


# The (weighted, centred) log cost moves a score by at most e times either way: a greeting's tiny cost must not
# outweigh a hard question's gain. On the dev rows the bound changes no figure by more than 0.1 point of save95.
COST_CLIP = 1.0


def objective_score(p_weak: float, p_strong: float, log_cost: float | None = None) -> float:
    """The router's raw score. Objective "quality" (log_cost None): the need score. Objective "cost": the
    predicted gain discounted by the predicted cost, gain * exp(-log_cost) (log_cost already weighted, see
    `QualityModel.cost_weight`), squashed monotonically into 0..1; sending the highest gain per dollar to premium
    first is what keeps a quality target at the least cost when gains are known, and a weight below 1 keeps
    noisy gain predictions from being swamped by the cost ordering."""
    if log_cost is None:
        return need_score(p_weak, p_strong)
    x = (p_strong - p_weak) * math.exp(-max(-COST_CLIP, min(COST_CLIP, log_cost)))
    return 1.0 / (1.0 + math.exp(-4.0 * max(-50.0, min(50.0, x))))


def need_score(p_weak: float, p_strong: float) -> float:
    """(1 + P(strong good) - P(weak good)) / 2: 0.5 when both are equally likely to do well."""
    return min(1.0, max(0.0, 0.5 * (1.0 + p_strong - p_weak)))


_models: dict[tuple[Any, ...], QualityModel] = {}
_models_lock = threading.Lock()


def _file_identity(path: str | None, embeddings: bool) -> tuple[Any, ...]:
    """What identifies the weights' content: the resolved file with its size and modification time (the
    packaged files: the installed package file)."""
    if path:
        p = Path(path)
    else:
        p = Path(str(resources.files("agent_router").joinpath(EMB_WEIGHTS if embeddings else WEIGHTS)))
    try:
        st = os.stat(p)
    except OSError:
        return (str(p), None, None)  # QualityModel.load names the missing file
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


def load_model(path: str | None, embeddings: bool = False) -> QualityModel:
    """Weights by path (None: packaged; `embeddings`: the packaged weights with embedding heads). Read-only
    and shared: loaded once per file content (path, size, modification time), so retraining into the same
    path is picked up by the next router; callers never modify the returned model."""
    key = _file_identity(path, embeddings)
    with _models_lock:
        m = _models.get(key)
    if m is None:
        m = QualityModel.load(path, embeddings)
        with _models_lock:
            if len(_models) >= 8:
                _models.pop(next(iter(_models)))
            m = _models.setdefault(key, m)
    return m
