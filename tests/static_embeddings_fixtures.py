"""A static embedding table built from the real all-MiniLM-L6-v2 for a subset of its vocabulary (the full
30,522-token table takes ~45 s; ~1,300 tokens take ~2 s), for tests/test_static_embeddings.py and
tests/test_embeddings.py."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from agent_router.learned.embeddings import minilm as E
from agent_router.learned.embeddings import static as S

from .cached import built_once

# Texts whose every token is in the subset table, so their static vectors are the real thing.
TEXTS = [
    "How do I reverse a linked list in Python?",
    "Write a function to invert a singly linked list.",
    "What is the capital of France?",
    "Which city is the capital of France?",
    "Solve 3x + 5 = 20 for x.",
    "Find x if 3x plus 5 equals 20.",
    "Write a poem about autumn leaves.",
    "Compose a short verse on falling leaves in fall.",
    "Prove that there are infinitely many primes.",
    "Demonstrate rigorously that sqrt(2) is irrational, showing every deduction.",
    "Greetings! Pass my regards along, pal.",
]
# Frequent words (BERT's vocabulary lists them roughly by frequency from id 1996 on).
COMMON = range(1996, 3196)


def subset_ids(extra: list[str] = ()) -> np.ndarray:
    tok = E.encoder().tokenizer
    ids = {i for t in [*TEXTS, *extra] for i in tok.encode(t)}
    return np.array(sorted(ids | set(COMMON)), dtype=np.int64)


def cached_subset(out: Path, extra: list[str] = ()) -> Path:
    """At `out`, the static table of `subset_ids(extra)`, copied from one built once (`cached_build`)."""
    shutil.copyfile(cached_build(subset_ids(extra)), out)
    return out


def cached_build(ids: np.ndarray, batch_size: int = 512) -> Path:
    """The static table of `ids` built with `batch_size`, once per (token ids, batch size, the build's code, the
    model's files, numpy) and kept across runs (tests/cached.py); read it, do not change it. The build is
    deterministic, bit for bit (test_building_twice_gives_the_same_table_bit_for_bit builds one afresh every run
    and compares it with this one), so a table an earlier run built from the same inputs is the table this run
    would build."""
    d = E.model_dir()
    h = hashlib.sha256(ids.tobytes() + np.__version__.encode())
    if batch_size != 512:  # the key of the tables built before batch_size was part of it
        h.update(f"batch_size={batch_size}".encode())
    for code in (S.__file__, E.__file__):
        h.update(Path(code).read_bytes())
    for name in ("config.json", "vocab.txt", "model.safetensors"):
        st = (d / name).stat()
        h.update(f"{d / name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())

    def build(tmp: Path) -> None:
        tmp.mkdir()
        S.build(tmp / "table.npz", ids=ids, batch_size=batch_size)

    return built_once(f"static-table-{h.hexdigest()[:16]}", build) / "table.npz"


def install(table: Path) -> Path:
    """Make `table` the static table of the current $AGENT_ROUTER_HOME (where the router looks for it)."""
    dest = S.default_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        os.symlink(table, dest)
    return dest
