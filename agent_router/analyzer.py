"""Complexity analysis: messages -> Analysis(score 0..1, task_type, reasons, features).

Heuristic and fast (well under a millisecond for a short prompt): regular-expression features of the request
and its context, combined by fixed weights into a logistic score. Plugins may replace it through the
`analyze` hook.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .messages import has_image, last_user_index, scan_window, text_of


@dataclass
class Analysis:
    """What the router knows about a request."""

    score: float
    task_type: str
    reasons: list[str] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)
    needs_vision: bool = False
    source: str = "heuristic"
    # The learned router's compact, non-reversible record of the request (adaptive.sketch), for the ledger.
    sketch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "task_type": self.task_type,
            "reasons": self.reasons,
            "features": {k: round(v, 4) for k, v in self.features.items()},
            "needs_vision": self.needs_vision,
            "source": self.source,
        }


class _Words:
    """Words and phrases (lower case) counted at word boundaries in lower-cased text. Written without a leading
    \\b so that `re` skips ahead on the phrases' first letters: about 5x quicker than (?i)\\b(?:...)\\b.

    The alternatives are grouped by their first letter, in their order within each group: `re` then tries at a
    position only the phrases that start with its letter (a quarter quicker). Phrases starting with different
    letters never match at the same position, so every match (and which phrase makes it) is that of the plain
    alternation (?:w1|w2|...)\\b."""

    def __init__(self, *words: str):
        self.words = words
        groups: dict[str, list[str]] = {}
        for w in words:
            if not (w[:1].isalpha() and w[:1].islower()) or w[1:2] in ("?", "*", "+", "{"):
                raise ValueError(f"analyzer word {w!r}: must start with a lower-case letter of its own")
            groups.setdefault(w[0], []).append(w[1:])
        alts = [c + ("(?:" + "|".join(rest) + ")" if rest != [""] else "") for c, rest in groups.items()]
        self.rx = re.compile(r"(?:" + "|".join(alts) + r")\b")

    def count(self, low: str) -> int:
        n = 0
        for m in self.rx.finditer(low):
            i = m.start()
            if i == 0 or not ((c := low[i - 1]).isalnum() or c == "_"):
                n += 1
        return n


_REASONING = _Words(
    r"why", r"prove", r"proof", r"derive", r"analy[sz]e", r"analysis", r"compare", r"trade-?offs?", r"evaluate",
    r"justify", r"reason(?:ing)?", r"step[- ]by[- ]step", r"implications?", r"critique", r"assess", r"infer",
    r"hypothes[ie]s", r"explain why", r"what would happen", r"pros and cons", r"root cause", r"design",
    r"architect(?:ure)?", r"strategy", r"optimi[sz]e", r"debug", r"edge cases?", r"counter-?example",
)
# Every pattern below runs on untrusted text, so each is linear: a line start is found by ^ with only [ \t]
# after it (never \s, which would run across every following newline), and every repetition that could
# overlap another is bounded. The text itself is bounded first (scan_window).
_MULTISTEP = re.compile(
    r"(?im)^[ \t]{0,64}(?:\d{1,9}[.)]|[-*•]|step \d{1,9})\s{1,16}|\b(?:then|after that|finally|next,|first,|second,)\b"
)
_CODE_LINE = re.compile(
    r"(?m)^[ \t]{0,64}(?:def |class |import |from \S{1,200} import|#include|public |private |function |const |"
    r"let |var |return\b|if \(|for \(|while \(|SELECT |CREATE |\}|\{$)|;[ \t]{0,64}$|=>|->|::|"
    r"\b\w{1,64}\([^\n]{0,256}\)[ \t]{0,16}[:{]?$"
)
# _CODE_LINE without its last alternative (a call ending a line), which alone is tried at every word character:
# on a text with no "(" that alternative never matches, so this finds the same lines at a third of the time.
_CODE_LINE_NO_CALL = re.compile(_CODE_LINE.pattern[:_CODE_LINE.pattern.rindex("|")])
_CODE_ASK = _Words(
    r"write (?:a |an |the )?(?:python |js |javascript |rust |go |java |c\+\+ |sql |bash )?(?:function|script|program|"
    r"class|code|query|test|regex|method|implementation)", r"implement", r"refactor", r"debug", r"fix (?:the|this|my) "
    r"(?:bug|code|error|test)", r"code", r"python", r"javascript", r"typescript", r"rust", r"golang", r"java",
    r"c\+\+", r"sql", r"regex", r"algorithm", r"compile", r"stack ?trace", r"exception", r"api", r"unit tests?",
    r"def", r"return",
)
_MATH_WORDS = _Words(
    r"solve", r"calculate", r"compute", r"equation", r"integral", r"derivative", r"probability", r"percent(?:age)?",
    r"sum of", r"product of", r"how many", r"how much", r"average", r"ratio", r"remainder", r"prime", r"factor",
    r"matrix", r"theorem", r"lemma", r"polynomial", r"logarithm", r"expected value", r"variance",
)
_MATH = re.compile(
    # Linear as written: each $, operator or digit starts at most one scan, which stops at the next $ or
    # non-space character.
    r"(?i)[=+\-*/^]\s*\d|\d\s*[=+\-*/^×÷]|\$[^$]+\$|\\frac|\\sum|\\int"
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")  # never fails once started: linear
_DIGITS = b"0123456789"
_RESEARCH = _Words(
    r"research", r"sources?", r"citations?", r"literature", r"papers?", r"survey", r"find out", r"look up", r"search",
    r"latest", r"state of the art", r"references?", r"history of",
)
_CREATIVE = _Words(
    r"story", r"poem", r"haiku", r"lyrics", r"song", r"creative", r"fiction", r"imagine", r"slogan", r"tagline",
    r"screenplay", r"novel", r"joke", r"limerick", r"rap", r"essay", r"blog post", r"tweet",
)
_EXTRACTION = _Words(
    r"extract", r"summari[sz]e", r"summary", r"tl;?dr", r"classify", r"categori[sz]e", r"tag", r"parse", r"list all",
    r"convert", r"translate", r"rewrite", r"paraphrase", r"format", r"json", r"csv", r"table", r"fix the grammar",
    r"proofread", r"sentiment",
)
_TOOLS = _Words(
    r"search (?:the )?web", r"browse", r"download", r"fetch", r"run (?:the |this )?(?:command|script|tests?)",
    r"execute", r"open (?:the )?file", r"read (?:the )?file", r"write (?:it )?to (?:a )?file", r"save", r"deploy",
    r"install", r"call the api", r"scrape", r"query the database", r"send (?:an )?email", r"schedule",
)
_LONG_OUT = _Words(
    r"detailed", r"in[- ]depth", r"comprehensive", r"thorough(?:ly)?", r"essay", r"report", r"full", r"complete",
    r"long", r"elaborate", r"all the", r"every", r"whitepaper", r"document(?:ation)?", r"tutorial", r"guide",
)
_SHORT_OUT = _Words(
    r"brief(?:ly)?", r"short", r"one (?:word|sentence|line)", r"yes or no", r"quick(?:ly)?", r"just", r"simply",
    r"tl;?dr", r"in a sentence", r"hi", r"hello", r"hey", r"thanks?", r"thank you", r"ok(?:ay)?",
)
_CONSTRAINTS = _Words(
    r"must", r"should", r"without", r"only", r"exactly", r"at least", r"at most", r"no more than", r"ensure",
    r"make sure", r"don't", r"do not", r"never", r"always", r"constraint", r"require(?:s|d|ment)?",
)
_CHOICES = re.compile(r"(?m)^[ \t]{0,64}(?:\(?[A-Ea-e][.):]|[A-E][ \t]{0,8}[-–]|Option [A-E])[ \t]{1,16}\S")

# Weights of the logistic score; each feature is scaled to about 0..1. Fitted by coordinate search on the
# routing-eval dev rows (signs held to their meaning: more work -> higher; fixed choices -> lower), then rounded.
_WEIGHTS: dict[str, float] = {
    "length": 3.0,
    "reasoning": 0.2,
    "multistep": 0.3,
    "code_presence": 2.5,
    "code_ask": 0.5,
    "math": 0.1,
    "numbers": 0.0,
    "tool_chaining": 2.0,
    "long_output": 0.2,
    "short_output": -0.3,
    "constraints": 0.0,
    "conversation_depth": 0.4,
    "images": 0.6,
    "context_length": 0.3,
    "questions": 0.0,
    "choices": -2.0,
    "research": 0.2,
    "creative": 0.3,
    "extraction": 0.8,
    "demands": 2.0,
}
_BIAS = -2.3


_DEMANDS = ("reasoning", "multistep", "code_ask", "math", "long_output", "constraints", "tool_chaining", "research")


_LOG121 = math.log1p(120)


def _sat(x: float, half: float) -> float:
    """0 at 0, 0.5 at `half`, approaching 1: a soft saturation for counts."""
    return x / (x + half) if x > 0 else 0.0


# A worked example inside a prompt ends with an answer cue, a short answer, then a blank line:
# "...Answer:\n<short answer>\n\n" (few-shot prompting). Linear: every repetition is bounded.
_SHOT_END = re.compile(
    r"(?i)\b(?:answer|a|output|solution)\s{0,16}:[ \t]{0,16}\n?[ \t]{0,16}[^\n]{1,80}\n(?:[ \t]{0,16}\n){1,64}"
)
MIN_QUESTION_CHARS = 8


def split_examples(text: str, min_examples: int = 2) -> tuple[str, int]:
    """The real question of a few-shot prompt (the text after its last worked example) and the number of worked
    examples before it; `(text, 0)` when fewer than `min_examples` precede a question of at least
    MIN_QUESTION_CHARS characters. The one few-shot splitter: the analyzer judges the real question with two or
    more examples, the learned router's features (learned.features) with one or more."""
    if ":" not in text or "\n" not in text:  # an example ends with a cue's ":" and a line break
        return text, 0
    ends = list(_SHOT_END.finditer(text))
    if len(ends) < max(1, min_examples):
        return text, 0
    tail = text[ends[-1].end():]
    if len(tail.strip()) < MIN_QUESTION_CHARS:
        return text, 0
    return tail, len(ends)


def features(messages: list[dict[str, Any]]) -> tuple[dict[str, float], str, bool]:
    """Feature values (about 0..1), the request text and whether images are attached."""
    i = last_user_index(messages)
    full = text_of(messages[i])
    window = scan_window(full)  # bounded: a megabyte message costs what ~32 KB do
    request, shots = split_examples(window)
    images = any(has_image(m) for m in messages)
    before = messages[:i]
    f = text_features(request, request.lower(), shots, len(full) - len(window), context_chars(before),
                      user_turns(before), images)
    return f, request, images


def context_chars(before: list[dict[str, Any]]) -> int:
    """Characters of text in the messages before the request."""
    return sum([len(text_of(m)) for m in before])


def user_turns(before: list[dict[str, Any]]) -> int:
    """User messages before the request."""
    return sum([1 for m in before if m.get("role") == "user"])


def text_features(request: str, low: str, shots: int, unread: int, before_chars: int, before_users: int,
                  images: bool) -> dict[str, float]:
    """Feature values of a request text (already bounded and split from its worked examples; `low` is
    `request.lower()`): `shots` worked examples were cut from it, `unread` characters of its message were not
    read (scan_window), the messages before it hold `before_chars` characters (context_chars) and
    `before_users` user messages (user_turns), and `images` says whether any message has an image."""
    # Context size in words, estimated from characters: walking a long history must stay cheap.
    context_words = before_chars // 6
    words = len(request.split())
    if unread:  # the unread middle counts at the window's words per character
        words = round(words * (len(request) + unread) / max(1, len(request)))
    # Whether the text may hold a digit: of an ASCII text, one of 0-9 (else \d matches nothing, and _NUMBER and
    # _MATH's digit alternatives find nothing); any other text is scanned as it is.
    digits = not request.isascii() or len(request.encode("ascii").translate(None, _DIGITS)) != len(request)
    f = {
        "length": _sat(math.log1p(words), _LOG121),
        "reasoning": _sat(_REASONING.count(low), 1.5),
        "multistep": _sat(len(_MULTISTEP.findall(request)), 3),
        "code_presence": _sat(request.count("```") * 3
                              + len((_CODE_LINE if "(" in request else _CODE_LINE_NO_CALL).findall(request)), 4),
        "code_ask": _sat(_CODE_ASK.count(low), 1.5),
        "math": _sat(_MATH_WORDS.count(low) + (len(_MATH.findall(request)) if digits or "$" in request
                                                or "\\" in request else 0), 2),
        "numbers": _sat(len(_NUMBER.findall(request)) if digits else 0, 4),
        "tool_chaining": _sat(_TOOLS.count(low), 1.5),
        "long_output": _sat(_LONG_OUT.count(low), 1.5),
        "short_output": _sat(_SHORT_OUT.count(low), 1) * (1.0 if words < 40 else 0.3),
        "constraints": _sat(_CONSTRAINTS.count(low), 2),
        "conversation_depth": _sat(before_users, 4),
        "images": 1.0 if images else 0.0,
        "context_length": _sat(context_words + 60 * shots, 2000),
        "questions": _sat(request.count("?"), 2),
        # Not weighted; used for the task type.
        "research": _sat(_RESEARCH.count(low), 1.5),
        "creative": _sat(_CREATIVE.count(low), 1),
        "extraction": _sat(_EXTRACTION.count(low), 1.5),
        "choices": _sat(len(_CHOICES.findall(request)), 2),
    }
    # Several distinct demands in one request (reason + plan steps + write code + ...) compound: each one past
    # the first adds. Rare in benchmark questions, common in real agent tasks that need the premium tier.
    active = sum([1 for k in _DEMANDS if f[k] >= 0.4])
    f["demands"] = _sat(max(0, active - 1), 1.0)
    return f


_LABELS = {
    "length": "long request",
    "reasoning": "asks for reasoning or analysis",
    "multistep": "multi-step instructions",
    "code_presence": "contains code",
    "code_ask": "asks for code",
    "math": "math",
    "numbers": "many numbers",
    "tool_chaining": "chains tools or actions",
    "long_output": "expects a long answer",
    "short_output": "expects a short answer",
    "constraints": "many constraints",
    "conversation_depth": "deep conversation",
    "images": "has images",
    "context_length": "long context",
    "questions": "several questions",
    "choices": "answer is one of given choices",
    "research": "research",
    "creative": "creative writing",
    "extraction": "extraction or transformation",
    "demands": "several distinct demands",
}


def task_type(f: dict[str, float]) -> str:
    """The dominant kind of work the request asks for."""
    if f["images"] > 0:
        return "vision"
    ranked = {
        "code": max(f["code_ask"], f["code_presence"] * 0.9),
        "math": f["math"] * 0.9 + f["numbers"] * 0.2,
        "reasoning": f["reasoning"] * 0.9,
        "research": f["research"],
        "creative": f["creative"],
        "extraction": f["extraction"] * 0.9,
    }
    best, val = max(ranked.items(), key=lambda kv: kv[1])
    return best if val >= 0.3 else "chat"


def score_of(f: dict[str, float]) -> float:
    """The heuristic complexity score (0..1) of feature values from `features`."""
    z = _BIAS + sum([w * f[k] for k, w in _WEIGHTS.items()])
    return 1.0 / (1.0 + math.exp(-z))


def analyze(messages: list[dict[str, Any]]) -> Analysis:
    """Heuristic complexity analysis of `messages` (validated OpenAI-shape chat messages)."""
    f, _request, vision = features(messages)
    score = score_of(f)
    contrib = sorted(((w * f[k], k) for k, w in _WEIGHTS.items() if f[k] > 0), reverse=True)
    reasons = [f"{_LABELS[k]} ({'+' if c >= 0 else ''}{c:.2f})" for c, k in contrib if abs(c) >= 0.15][:4]
    if not reasons:
        reasons = ["short, simple request"]
    tt = task_type(f)
    return Analysis(score=score, task_type=tt, reasons=[f"task: {tt}", *reasons], features=f, needs_vision=vision)
