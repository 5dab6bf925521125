"""Important lines: the lines of a text that match `important_patterns`, ranked by which pattern matched.

Bounded on any text: a text is searched in its first SCAN_HEAD_CHARS and last SCAN_TAIL_CHARS characters
(whole lines), each line on its first LINE_CHARS characters only. The shipped patterns are linear; a pattern
an operator adds (checked for nested repetition when the settings load, see settings.py) runs on the `regex`
engine with a time limit per text (OPERATOR_PATTERN_SECONDS), after which it is skipped for that text.
"""

from __future__ import annotations

import bisect
import re
import time
from dataclasses import dataclass
from typing import Any

import regex

from ..settings import DEFAULT_IMPORTANT_PATTERNS
from .blocks import FENCE_OPEN

FACT_CHARS = 300
LINE_CHARS = 1_000
SCAN_HEAD_CHARS = 48_000
SCAN_TAIL_CHARS = 16_000
OPERATOR_PATTERN_SECONDS = 0.05
# What lies past the first LINE_CHARS characters of a line. Linear: tried only at line starts.
_LINE_REST = re.compile(r"(?m)^[^\n]{" + str(LINE_CHARS) + r"}([^\n]+)")


@dataclass(frozen=True)
class Fact:
    prio: int  # index of the first pattern that matched (lower is more important)
    order: int  # position in the conversation (higher is newer)
    line: str
    weak: bool = False  # from tool-call arguments: ranked after the conversation's own lines
    pos: int = 0  # offset of the line in the text it came from


class OperatorPattern:
    """A pattern from the operator's settings: run by the `regex` engine, which can stop a search after a
    deadline (Python's `re` cannot), so a pattern that backtracks badly costs time, never a hang."""

    def __init__(self, source: str):
        self.source = source
        self.rx = regex.compile(source, regex.MULTILINE)
        self.deadline = 0.0

    def search(self, text: str, pos: int = 0) -> Any:
        left = self.deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return self.rx.search(text, pos, timeout=left)
        except TimeoutError:
            self.deadline = 0.0
            return None


def compile_patterns(sources: list[str]) -> list[Any]:
    """Compiled `important_patterns`: the shipped (linear) ones by `re`, others as OperatorPattern."""
    return [re.compile(p, re.MULTILINE) if p in DEFAULT_IMPORTANT_PATTERNS else OperatorPattern(p)
            for p in sources]


def _view(text: str) -> tuple[str, list[int], list[int]]:
    """The part of `text` that is searched (start and end, long lines cut), with the offsets where each kept
    piece starts in the view and in `text` (to map a position back)."""
    n = len(text)
    cuts: list[tuple[int, int]] = []
    a, b = n, n
    if n > SCAN_HEAD_CHARS + SCAN_TAIL_CHARS:
        a = text.find("\n", SCAN_HEAD_CHARS) + 1 or n
        b = max(a, text.rfind("\n", 0, n - SCAN_TAIL_CHARS) + 1)
    cuts += [m.span(1) for m in _LINE_REST.finditer(text, 0, a)]
    if b > a:
        cuts.append((a, b))
    cuts += [m.span(1) for m in _LINE_REST.finditer(text, b)]
    if not cuts:
        return text, [0], [0]
    pieces, vstarts, ostarts = [], [], []
    at = v = 0
    for s, e in cuts:
        pieces.append(text[at:s])
        vstarts.append(v)
        ostarts.append(at)
        v += s - at
        at = e
    pieces.append(text[at:])
    vstarts.append(v)
    ostarts.append(at)
    return "".join(pieces), vstarts, ostarts


def _fact_line(line: str, m: Any) -> str:
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


def find_facts(text: str, patterns: list[Any], order: int) -> list[Fact]:
    """Lines of `text` matching a pattern, each with the index of the first pattern it matches.

    Each pattern scans the text in C, jumping to the next line after a match, rather than Python looping
    over lines; patterns are compiled with MULTILINE so ^ and $ still mean a line's start and end.
    """
    if not text:
        return []
    view, vstarts, ostarts = _view(text)
    n = len(view)
    best: dict[int, tuple[int, int]] = {}  # line start -> (pattern index, line end)
    for prio, p in enumerate(patterns):
        if isinstance(p, OperatorPattern):
            p.deadline = time.monotonic() + OPERATOR_PATTERN_SECONDS
        pos = 0
        while pos < n:
            m = p.search(view, pos)
            if m is None:
                break
            start = view.rfind("\n", 0, m.start()) + 1
            end = view.find("\n", m.start())
            end = n if end < 0 else end
            if start not in best:
                best[start] = (prio, end)
            pos = end + 1
    out: list[Fact] = []
    for start in sorted(best):
        prio, end = best[start]
        raw = view[start:end]
        s = raw.strip()
        if not s or FENCE_OPEN.match(raw):
            continue
        m = patterns[prio].search(s) if len(s) > FACT_CHARS else None
        fact = _fact_line(s, m) if m else s[:FACT_CHARS * 2]
        k = bisect.bisect_right(vstarts, start) - 1
        out.append(Fact(prio, order, fact.replace("```", "'''"), pos=ostarts[k] + start - vstarts[k]))
    return out
