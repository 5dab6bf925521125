"""Important lines: the lines of a text that match `important_patterns`, ranked by which pattern matched."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .text_blocks import FENCE_OPEN

FACT_CHARS = 300


@dataclass(frozen=True)
class Fact:
    prio: int  # index of the first pattern that matched (lower is more important)
    order: int  # position in the conversation (higher is newer)
    line: str
    weak: bool = False  # from tool-call arguments: ranked after the conversation's own lines
    pos: int = 0  # offset of the line in the text it came from


def _fact_line(line: str, m: re.Match[str]) -> str:
    s = line.strip()
    if len(s) <= FACT_CHARS:
        return s
    # A long line: keep the sentence around the match, whole words only.
    a = max(s.rfind(". ", 0, m.start()) + 2, 0) if s.rfind(". ", 0, m.start()) >= 0 else 0
    b = s.find(". ", m.end())
    b = len(s) if b < 0 else b + 1
    piece = s[a:b]
    if len(piece) > FACT_CHARS:
        lo = max(0, m.start() - a - FACT_CHARS // 2)
        piece = piece[lo:lo + FACT_CHARS]
        piece = piece[piece.find(" ") + 1:] if lo else piece
        piece = piece[:piece.rfind(" ")] if " " in piece else piece
        piece = f"…{piece}…"
    return piece


def find_facts(text: str, patterns: list[re.Pattern[str]], order: int) -> list[Fact]:
    """Lines of `text` matching a pattern, each with the index of the first pattern it matches.

    Each pattern scans the text in C, jumping to the next line after a match, rather than Python looping
    over lines; patterns are compiled with MULTILINE so ^ and $ still mean a line's start and end.
    """
    if not text:
        return []
    n = len(text)
    best: dict[int, tuple[int, int]] = {}  # line start -> (pattern index, line end)
    for prio, p in enumerate(patterns):
        pos = 0
        while pos < n:
            m = p.search(text, pos)
            if m is None:
                break
            start = text.rfind("\n", 0, m.start()) + 1
            end = text.find("\n", m.start())
            end = n if end < 0 else end
            if start not in best:
                best[start] = (prio, end)
            pos = end + 1
    out: list[Fact] = []
    for start in sorted(best):
        prio, end = best[start]
        raw = text[start:end]
        s = raw.strip()
        if not s or FENCE_OPEN.match(raw):
            continue
        m = patterns[prio].search(s) if len(s) > FACT_CHARS else None
        fact = _fact_line(s, m) if m else s[:FACT_CHARS * 2]
        out.append(Fact(prio, order, fact.replace("```", "'''"), pos=start))
    return out
