"""The structure inside chat messages: fenced code, JSON documents, pasted text and tool results as atomic
blocks; the markers that replace them when elided; and a checker for what providers reject.

Blocks partition a message's text exactly (joined again they give it back), so an elided block is always
replaced whole, never cut.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import islice
from typing import Any

from .. import messages as msgs
from ..tokens import IMAGE_TOKENS

# Unfenced text this long is treated as a pasted file: elided whole, never cut.
_PASTED_LINES = 40
_PASTED_CHARS = 6000
_GIST_CHARS = 140

FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})([^\n]*)$")
FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")
_JSON = json.JSONDecoder()


@dataclass
class Block:
    kind: str  # prose | code | json | text (pasted) | tool | image | args
    text: str
    part: int  # content part index; -1 string content; -(j+2) tool call j's arguments
    tokens: int = 0
    label: str = ""
    elided: bool = False
    marker: str = ""
    start: int = -1  # offset in the message's string content; -1 when it is not string content


# Line breaks other than \n and \r\n (str.splitlines knows them): text with any takes the line-by-line path.
_ODD_BREAKS = re.compile("\r(?!\n)|[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# Lines that may open a block: a fence, or "[" / "{" after leading whitespace. Tried at line starts only.
_BLOCK_START = re.compile(r"(?m)^(?: {0,3}(?:`{3}|~{3})|[^\S\n]*[\[{])")
_FENCE_START = re.compile(r"(?m)^ {0,3}(?:`{3}|~{3})")
_JSON_START = re.compile(r"(?m)^[^\S\n]*[\[{]")


def _prose_kind(chunk: str) -> tuple[str, str, str]:
    """Unfenced text (no \r or odd line breaks): "text" when long enough to be a pasted file, else "prose"."""
    lines = chunk.count("\n") + (0 if chunk.endswith("\n") else 1)
    return ("text" if lines >= _PASTED_LINES or len(chunk) >= _PASTED_CHARS else "prose"), chunk, ""


def _json_end(text: str, start: int, budget: int) -> tuple[int, int]:
    """Where the JSON document starting at `start` ends (-1: none), and `budget` less the characters read."""
    try:
        _, end = _JSON.raw_decode(text, start)
        return end, budget - (end - start)
    except json.JSONDecodeError as e:
        return -1, budget - (e.pos - start + 1)
    except (ValueError, RecursionError):  # nested deeper than the decoder goes ("[" * 100000)
        return -1, budget - (len(text) - start)


def split_text(text: str) -> list[tuple[str, str, str]]:
    """Partition text into (kind, text, label) pieces that concatenate back to it exactly.

    Fenced code blocks (CommonMark fences; an unclosed fence runs to the end) and multi-line JSON documents
    are atomic; long unfenced runs are "text" (pasted files); the rest is prose.

    Only lines that can open a block are looked at one by one (found by one scan in C), so text of a million
    short lines costs what a few long ones do; text with unusual line breaks goes line by line.
    """
    if not text or _ODD_BREAKS.search(text):
        return _split_lines(text)
    fences = "```" in text or "~~~" in text
    if not fences and "[" not in text and "{" not in text:  # no line can open a block
        return [_prose_kind(text)]
    starts = _BLOCK_START if fences else _JSON_START
    out: list[tuple[str, str, str]] = []
    n = len(text)
    json_budget = 2 * n + 100_000  # as in _split_lines
    pos = 0  # start of text not yet given out

    def flush(upto: int) -> None:
        if upto > pos:
            out.append(_prose_kind(text[pos:upto]))

    def line_end(at: int) -> int:  # end of the line holding `at`, past its newline
        e = text.find("\n", at)
        return n if e < 0 else e + 1

    at = 0
    while True:
        m = (starts if json_budget > 0 else _FENCE_START).search(text, at)
        if m is None:
            break
        ls = m.start()
        le = line_end(ls)
        at = le
        bare = text[ls:le].rstrip("\r\n")
        f = FENCE_OPEN.match(bare)
        if f and not (f.group(1)[0] == "`" and "`" in f.group(2)):
            fence = f.group(1)
            end = n
            for c in _FENCE_START.finditer(text, le):
                cl = line_end(c.start())
                cm = FENCE_CLOSE.match(text[c.start():cl].rstrip("\r\n"))
                if cm and cm.group(1)[0] == fence[0] and len(cm.group(1)) >= len(fence):
                    end = cl
                    break
            flush(ls)
            out.append(("code", text[ls:end], f.group(2).strip().split(" ")[0]))
            pos = at = end
            continue
        stripped = bare.lstrip()
        if stripped[:1] in ("{", "[") and (le < n or len(stripped) >= 200) and json_budget > 0:
            start = ls + (len(bare) - len(stripped))
            end, json_budget = _json_end(text, start, json_budget)
            if end > 0:
                ke = line_end(end - 1)  # the document must end its line
                if not text[end:ke].strip() and (text.find("\n", ls, end) >= 0 or end - start >= 200):
                    flush(ls)
                    out.append(("json", text[ls:ke], ""))
                    pos = at = ke
    flush(n)
    return out


def _split_lines(text: str) -> list[tuple[str, str, str]]:
    """split_text, line by line (for text with line breaks other than \n and \r\n)."""
    lines = text.splitlines(keepends=True)
    out: list[tuple[str, str, str]] = []
    prose: list[str] = []
    offsets = []
    pos = 0
    for ln in lines:
        offsets.append(pos)
        pos += len(ln)

    def flush() -> None:
        if prose:
            chunk = "".join(prose)
            kind = "text" if len(prose) >= _PASTED_LINES or len(chunk) >= _PASTED_CHARS else "prose"
            out.append((kind, chunk, ""))
            prose.clear()

    i = 0
    n = len(lines)
    # Characters the JSON decoder may read in all: a failed attempt reads up to where the document breaks, and
    # many lines opening "[" or "{" that break only at the end would otherwise read the text once per line.
    json_budget = 2 * len(text) + 100_000
    while i < n:
        line = lines[i]
        bare = line.rstrip("\r\n")
        m = FENCE_OPEN.match(bare)
        if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            fence = m.group(1)
            j = i + 1
            while j < n:
                c = FENCE_CLOSE.match(lines[j].rstrip("\r\n"))
                if c and c.group(1)[0] == fence[0] and len(c.group(1)) >= len(fence):
                    break
                j += 1
            flush()
            out.append(("code", "".join(lines[i:j + 1]), m.group(2).strip().split(" ")[0]))
            i = j + 1
            continue
        stripped = bare.lstrip()
        if stripped[:1] in ("{", "[") and (i + 1 < n or len(stripped) >= 200) and json_budget > 0:
            start = offsets[i] + (len(bare) - len(stripped))
            end, json_budget = _json_end(text, start, json_budget)
            if end > 0:
                # The document must end its line; find the line holding `end`.
                k = i
                while k + 1 < n and offsets[k + 1] < end:
                    k += 1
                rest = text[end:offsets[k] + len(lines[k])]
                if not rest.strip() and (k > i or end - start >= 200):
                    flush()
                    out.append(("json", "".join(lines[i:k + 1]), ""))
                    i = k + 1
                    continue
        prose.append(line)
        i += 1
    flush()
    return out


def unclosed_fence(text: str) -> bool:
    """True when a code fence in `text` is opened and never closed (CommonMark rules)."""
    if "```" not in text and "~~~" not in text:
        return False
    if _ODD_BREAKS.search(text):
        lines: Any = text.splitlines()
    else:  # only the lines that start like a fence, found by one scan in C
        lines = (text[m.start():(text.find("\n", m.start()) + 1 or len(text) + 1) - 1].rstrip("\r")
                 for m in _FENCE_START.finditer(text))
    fence = None
    for line in lines:
        if fence is None:
            m = FENCE_OPEN.match(line)
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
        else:
            c = FENCE_CLOSE.match(line)
            if c and c.group(1)[0] == fence[0] and len(c.group(1)) >= len(fence):
                fence = None
    return fence is not None


def _content_chars(m: dict[str, Any]) -> int:
    c = m.get("content")
    n = len(c) if isinstance(c, str) else 0
    if isinstance(c, list):
        for p in c:
            if isinstance(p, dict) and "text" in p:
                n += len(str(p.get("text", "")))
            else:
                n += 40
    for tc in m.get("tool_calls") or []:
        n += len(json.dumps(tc, default=str))
    return max(n, 1)


def blocks_of(m: dict[str, Any], tokens: int) -> list[Block]:
    """The message's content as blocks, with token estimates proportional to characters."""
    per_char = tokens / _content_chars(m)
    out: list[Block] = []
    role = m.get("role")
    c = m.get("content")

    def add_text(text: str, part: int) -> None:
        if role in ("tool", "function"):
            if text:
                start = 0 if part == -1 else -1
                out.append(Block("tool", text, part, int(len(text) * per_char), start=start))
            return
        at = 0
        for kind, piece, label in split_text(text):
            start = at if part == -1 else -1
            out.append(Block(kind, piece, part, int(len(piece) * per_char), label, start=start))
            at += len(piece)

    if isinstance(c, str):
        add_text(c, -1)
    elif isinstance(c, list):
        for k, p in enumerate(c):
            if isinstance(p, dict) and p.get("type") in ("image_url", "image", "input_image"):
                out.append(Block("image", "", k, IMAGE_TOKENS))
            elif isinstance(p, dict) and "text" in p:
                add_text(str(p.get("text", "")), k)
    for j, tc in enumerate(m.get("tool_calls") or []):
        args = ((tc or {}).get("function") or {}).get("arguments")
        if isinstance(args, str) and args:
            out.append(Block("args", args, -(j + 2), int(len(args) * per_char), call_name(tc)))
    return out


def call_name(tc: Any) -> str:
    try:
        return str(tc["function"]["name"])
    except (KeyError, TypeError):
        return "?"



_NON_SPACE = re.compile(r"\S")


def first_line(text: str, limit: int = 70) -> str:
    m = _NON_SPACE.search(text)  # blank lines are skipped in C; at most 1,000 lines of fences are read
    if m is None:
        return ""
    start = text.rfind("\n", 0, m.start()) + 1
    for ln in islice(text[start:start + 100_000].splitlines(), 1000):
        s = ln.strip().strip("`~").strip()
        if s:
            s = s.replace("`", "'")
            return s if len(s) <= limit else s[:limit].rsplit(" ", 1)[0] + "…"
    return ""


def gist(text: str, limit: int = _GIST_CHARS, fill: bool = False) -> str:
    """The first sentence of prose (with `fill`, as many whole sentences as fit), at most `limit` chars."""
    s = " ".join(text.split())
    if not s:
        return ""
    ends = [m.start() for m in re.finditer(r"(?<=[.!?])\s", s)]
    if fill:
        if len(s) > limit:
            within = [e for e in ends if e <= limit]
            s = s[:within[-1]] if within else s
    elif ends and ends[0] <= limit:
        s = s[:ends[0]]
    if len(s) > limit:
        s = s[:limit].rsplit(" ", 1)[0] + "…"
    return s.replace("`", "'")


def size_class(tokens: int) -> int:
    """Sizes within ~25% of each other share a class, so that among similar items the older goes first."""
    return int(math.log(max(tokens, 1), 1.25))


def est_tokens(text: str) -> int:
    return len(text) // 3 + 2



def role_kind(m: dict[str, Any] | None) -> str | None:
    if m is None:
        return None
    r = m.get("role")
    return {"developer": "system", "function": "tool"}.get(r, r)


def _json_desc(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return "JSON"
    if isinstance(doc, dict):
        keys = list(doc)[:6]
        more = ", …" if len(doc) > 6 else ""
        return f"JSON object with keys {', '.join(map(str, keys))}{more}".replace("`", "'")
    if isinstance(doc, list):
        return f"JSON array of {len(doc)} items"
    return "JSON value"


def marker(b: Block, m: dict[str, Any], facts: list[str]) -> str:
    lines = b.text.count("\n") + (0 if b.text.endswith("\n") else 1)
    size = f"{lines:,} lines, {len(b.text):,} chars, ~{b.tokens:,} tokens"
    if b.kind == "code":
        lang = b.label or "code"
        body = b.text.split("\n", 1)[1] if "\n" in b.text else ""
        what = f"code block elided: {lang}, {size}"
        hint = first_line(body)
        what += f'; starts "{hint}"' if hint else ""
    elif b.kind == "json":
        what = f"{_json_desc(b.text)} elided: {size}"
    elif b.kind == "tool":
        what = f"tool result elided ({m.get('name') or 'tool'}, id {m.get('tool_call_id', '?')}): {size}"
        hint = first_line(b.text)
        what += f'; starts "{hint}"' if hint else ""
    elif b.kind == "image":
        what = "image elided (~765 tokens)"
    else:
        what = f"pasted text elided: {size}"
        hint = first_line(b.text)
        what += f'; starts "{hint}"' if hint else ""
    if facts:
        what += ". Important lines kept:\n" + "\n".join(f"- {f}" for f in facts)
    trail = "\n" if b.text.endswith("\n") else ""
    return f"[{what}]{trail}"



# Whitespace at a line's end, taken from the start of the run only (else each space of a long run would start
# a scan of the rest of it).
_TRAILING_SPACE = re.compile(r"(?m)(?<![^\S\n])[^\S\n]+$")


def tidy_whitespace(text: str) -> str:
    """Whitespace-only tidying outside code fences: trailing spaces, blank-line runs, repeated paragraphs."""
    out: list[str] = []
    seen: set[str] = set()
    for kind, piece, _ in split_text(text):
        if kind in ("code", "json"):
            out.append(piece)
            continue
        piece = _TRAILING_SPACE.sub("", piece)
        piece = re.sub(r"\n{3,}", "\n\n", piece)
        paras = piece.split("\n\n")
        kept = []
        for p in paras:
            key = p.strip()
            if len(key) >= 40 and key in seen:
                continue
            if len(key) >= 40:
                seen.add(key)
            kept.append(p)
        out.append("\n\n".join(kept))
    return "".join(out)



def append_text(m: dict[str, Any], text: str) -> dict[str, Any]:
    c = m.get("content")
    if isinstance(c, list):
        return {**m, "content": [*c, {"type": "text", "text": text}]}
    return {**m, "content": f"{c or ''}\n\n{text}"}


def prepend_text(m: dict[str, Any], text: str) -> dict[str, Any]:
    c = m.get("content")
    if isinstance(c, list):
        return {**m, "content": [{"type": "text", "text": text}, *c]}
    return {**m, "content": f"{text}\n\n{c or ''}"}



def structure_problems(messages: list[dict[str, Any]]) -> list[str]:
    """What a provider would reject or a reader would misread; [] when the messages are well formed.

    Checked: tool results follow the assistant message that called them (only other results between), every
    tool call has its result and every result its call, after system messages the first message is a user
    message, no two user (or two assistant) messages in a row, and every code fence is closed.
    """
    problems: list[str] = []
    open_calls: dict[str, int] = {}
    prev_role = None
    first_other = True
    for i, m in enumerate(messages):
        role = role_kind(m)
        if role != "system" and first_other:
            first_other = False
            if role != "user":
                problems.append(f"[{i}]: first message after the system prompt is {role}, not user")
        if role == "tool":
            cid = str(m.get("tool_call_id"))
            if cid not in open_calls:
                problems.append(f"[{i}]: tool result {cid} without its call just before it")
            else:
                del open_calls[cid]
        else:
            for cid, at in open_calls.items():
                problems.append(f"[{at}]: tool call {cid} without its result")
            open_calls = {}
            if role in ("user", "assistant") and role == prev_role:
                problems.append(f"[{i}]: two {role} messages in a row")
        if role == "assistant":
            for tc in m.get("tool_calls") or []:
                open_calls[str((tc or {}).get("id"))] = i
        if unclosed_fence(msgs.text_of(m)):
            problems.append(f"[{i}]: unclosed code fence")
        prev_role = role
    for cid, at in open_calls.items():
        problems.append(f"[{at}]: tool call {cid} without its result")
    return problems
