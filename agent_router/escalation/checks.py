"""Deterministic checks of a cheap model's answer: did it visibly fail, so the same call should go one tier up?

`run_checks(messages, answer, finish_reason=None, tool_calls=None)` returns a list of `Finding`s, each a check
name and one human-readable reason. The checks (see docs/escalation.md):

- ``empty``: no text and no tool call;
- ``truncated``: finish_reason "length", an unclosed code fence, brackets left open at the end of code / JSON,
  or prose cut mid-sentence;
- ``code_unparseable``: a fenced Python block that `ast.parse` rejects, when the request asks for code;
- ``json_unparseable``: a fenced JSON block, a JSON-only answer to a request asking for JSON, or tool-call
  arguments that `json.loads` rejects;
- ``refusal`` / ``ask_back``: "I can't ...", "As an AI ...", or asking a clarifying question instead of answering;
- ``repetition``: repeated lines, repeated word 8-grams, or a periodic tail (a generation loop);
- ``wrong_language``: the answer is written in another script (alphabet) than the request;
- ``arithmetic_slip``: a simple "a op b = c" in the answer that is wrong.

Hostile input is normal input: every regex is linear (bounded quantifiers, no nested repetition), every scan is
capped (MAX_SCAN characters from each end of the answer), and no check raises on any string.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..messages import last_user_index, text_of

# Characters of an answer a scan looks at (from the start; tail checks look at as many from the end).
MAX_SCAN = 200_000
# Largest code / JSON block parsed.
MAX_PARSE = 100_000
# Most blocks parsed per answer.
MAX_BLOCKS = 8

CHECKS: tuple[str, ...] = (
    "empty", "truncated", "code_unparseable", "json_unparseable", "refusal", "ask_back", "repetition",
    "wrong_language", "arithmetic_slip",
)


@dataclass(frozen=True)
class Finding:
    """One failed check: its name (one of CHECKS) and why, in words a user can read."""

    check: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "reason": self.reason}


# -- helpers -------------------------------------------------------------------------------------------------
_FENCE = re.compile(r"(?m)^[ \t]{0,3}```[ \t]{0,8}([A-Za-z0-9_+-]{0,20})[^\n`]{0,80}$")
_CODE_ASK = re.compile(
    r"(?i)\b(?:python|function|code|script|program|implement|def|class|snippet|regex|algorithm)\b")
_JSON_ASK = re.compile(r"(?i)\bjson\b")
_PY_HINT = re.compile(r"(?m)^[ \t]{0,8}(?:def |class |import |from \S{1,80} import |print\(|return\b|for |if )")


def _blocks(text: str) -> tuple[list[tuple[str, str]], bool]:
    """Fenced blocks (language, body) of the first MAX_SCAN characters, and whether the last fence is unclosed."""
    fences = list(_FENCE.finditer(text[:MAX_SCAN]))
    out: list[tuple[str, str]] = []
    for i in range(0, len(fences) - 1, 2):
        a, b = fences[i], fences[i + 1]
        out.append((a.group(1).lower(), text[a.end() + 1:b.start()]))
    return out, len(fences) % 2 == 1


def _open_depth(text: str) -> int:
    """Brackets left open at the end of `text` (strings in double quotes skipped), at most a few hundred."""
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "([{":
            if len(stack) < 500:
                stack.append(ch)
        elif ch in pairs:
            if stack and stack[-1] == pairs[ch]:
                stack.pop()
    return len(stack) + (1 if in_str else 0)


def _py_error(code: str) -> str | None:
    """Why `code` is not valid Python, or None."""
    if len(code) > MAX_PARSE:
        return None
    # Interactive sessions (">>> ") are not modules; strip their prompts and drop their output lines.
    if ">>>" in code:
        code = "\n".join(ln[4:] if ln.startswith((">>> ", "... ")) else "" for ln in code.splitlines())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(code)
    except SyntaxError as e:
        return f"{e.msg} at line {e.lineno}"
    except (ValueError, RecursionError, MemoryError, OverflowError) as e:
        return type(e).__name__
    return None


def _json_error(text: str) -> str | None:
    if len(text) > MAX_PARSE:
        return None
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    except (ValueError, RecursionError, MemoryError) as e:
        return type(e).__name__
    return None


# -- the checks ----------------------------------------------------------------------------------------------
_TERMINAL = set(".!?。！？…:)]}\"'`*|>")
_BULLET = re.compile(r"^\s{0,8}(?:[-*+•]|\d{1,3}[.)]|#{1,6}|\|)")


def _truncation(answer: str, finish_reason: str | None, blocks_open: bool, blocks: list[tuple[str, str]]
                ) -> Finding | None:
    if finish_reason == "length":
        return Finding("truncated", "the answer stopped at the output token limit (finish_reason 'length')")
    if blocks_open:
        return Finding("truncated", "a code block is opened with ``` and never closed")
    tail = answer[-MAX_SCAN:].rstrip()
    if not tail:
        return None
    stripped = tail.lstrip()
    if stripped[:1] in "{[" and _open_depth(stripped) > 0:
        return Finding("truncated", "the answer's JSON ends with brackets still open")
    if blocks and blocks[-1][0] in ("python", "py", "json", "javascript", "js", "") and \
            answer.rstrip().endswith("```"):
        depth = _open_depth(blocks[-1][1][-MAX_SCAN:]) if blocks[-1][0] in ("json",) else 0
        if depth > 0:
            return Finding("truncated", "the last code block ends with brackets still open")
    last = tail.rsplit("\n", 1)[-1]
    if len(tail) >= 200 and len(last) >= 40 and not _BULLET.match(last) and tail[-1] not in _TERMINAL and \
            (tail[-1].isalnum() or tail[-1] in ",;-("):
        words = last.split()
        end = words[-1] if words else ""
        if not end.isdigit():
            return Finding("truncated", f"the answer ends mid-sentence (…{last[-40:]!r})")
    return None


def _code_checks(request: str, answer: str, blocks: list[tuple[str, str]]) -> list[Finding]:
    out: list[Finding] = []
    asks_code = bool(_CODE_ASK.search(request[:MAX_SCAN]))
    asks_json = bool(_JSON_ASK.search(request[:MAX_SCAN]))
    for lang, body in blocks[:MAX_BLOCKS]:
        if asks_code and (lang in ("python", "py", "python3") or (lang == "" and _PY_HINT.search(body[:2000]))):
            err = _py_error(body)
            if err and lang == "" and not err.startswith(("invalid syntax", "unexpected indent")):
                err = None  # an unlabelled block that only looks like Python: only the clearest errors count
            if err:
                out.append(Finding("code_unparseable", f"a Python block does not parse: {err}"))
                break
    for lang, body in blocks[:MAX_BLOCKS]:
        if lang == "json":
            err = _json_error(body)
            if err:
                out.append(Finding("json_unparseable", f"a JSON block does not parse: {err}"))
                break
    if asks_json and not blocks:
        s = answer.strip()
        if s[:1] in "{[":
            err = _json_error(s)
            if err:
                out.append(Finding("json_unparseable", f"the JSON answer does not parse: {err}"))
    return out


def _tool_call_checks(tool_calls: Sequence[Any] | None) -> list[Finding]:
    out: list[Finding] = []
    for i, tc in enumerate(list(tool_calls or [])[:32]):
        fn = tc.get("function") if isinstance(tc, dict) else None
        args = fn.get("arguments") if isinstance(fn, dict) else (tc.get("arguments") if isinstance(tc, dict)
                                                                 else None)
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(args, str):
            err = _json_error(args) if args.strip() else None
            if err is None and len(args) > MAX_PARSE:
                err = "arguments too long to check"
            if err is not None:
                out.append(Finding("json_unparseable",
                                   f"tool call {i} ({str(name)[:60]}) has arguments that are not JSON: {err}"))
        if fn is not None and not (isinstance(name, str) and name.strip()):
            out.append(Finding("json_unparseable", f"tool call {i} names no function"))
    return out


_REFUSAL = re.compile(
    r"(?i)\b(?:i(?:'m| am) (?:sorry|afraid),? but i (?:can(?:'|no)?t|cannot|am not able|won't)|"
    r"i (?:can(?:'|no)?t|cannot|won't|will not|am unable to|am not able to|'m unable to|'m not able to) "
    r"(?:help|assist|provide|comply|do that|fulfil|fulfill|answer|create|write|generate|share|give)|"
    r"as an ai\b|as a(?: responsible| helpful)? (?:ai|language model|assistant)\b|i must (?:respectfully )?"
    r"(?:decline|point out|refuse)|i apologi[sz]e,? but|it is not (?:appropriate|possible) for me|"
    r"(?:is|are|would be) (?:not appropriate|inappropriate|harmful|offensive|unethical))")
_ASK_BACK = re.compile(
    r"(?i)\b(?:could|can|would) you (?:please )?(?:clarify|provide (?:more|some|additional)|specify|"
    r"tell me (?:more|which|what)|give me more|share more|elaborate)|please (?:clarify|provide more|specify)|"
    r"what do you mean by|i(?:'m| am) not sure what you(?:'re| are) asking|i need more (?:information|context|"
    r"details)|(?:more|additional) (?:context|information|details) (?:is|are) needed")


def _refusal_checks(answer: str) -> list[Finding]:
    head = answer[:600]
    out: list[Finding] = []
    m = _REFUSAL.search(head)
    if m:
        out.append(Finding("refusal", f"the answer refuses or lectures: {m.group(0)!r}"))
    m = _ASK_BACK.search(head) or (_ASK_BACK.search(answer[-400:]) if len(answer) < 1500 else None)
    if m:
        out.append(Finding("ask_back", f"the answer asks back instead of answering: {m.group(0)!r}"))
    return out


_WORDS = re.compile(r"\w{1,40}")


def repetition_share(answer: str) -> float:
    """Share of word 8-grams that repeat an earlier one (over the first MAX_SCAN characters)."""
    words = _WORDS.findall(answer[:MAX_SCAN].lower())
    if len(words) < 40:
        return 0.0
    grams = Counter(hash(tuple(words[i:i + 8])) for i in range(0, len(words) - 7))
    total = sum(grams.values())
    return (total - len(grams)) / total


def _repetition(answer: str) -> Finding | None:
    lines = [ln.strip() for ln in answer[:MAX_SCAN].splitlines() if len(ln.strip()) >= 12]
    if len(lines) >= 6:
        counts = Counter(lines)
        line, top = counts.most_common(1)[0]
        dup = len(lines) - len(counts)
        if top >= 4 and dup / len(lines) >= 0.5:
            return Finding("repetition", f"{dup} of {len(lines)} lines repeat earlier ones ({line[:50]!r} x{top})")
    share = repetition_share(answer)
    if share >= 0.5:
        return Finding("repetition", f"{100 * share:.0f}% of the answer's 8-word sequences repeat earlier ones")
    tail = answer[-1200:]
    if len(tail) >= 1200 and not tail.isspace():
        for p in range(1, 121):
            if tail[p:] == tail[:-p] and len(set(tail)) > 1:
                return Finding("repetition", f"the answer ends in a loop repeating {tail[-p:][:40]!r}")
            if tail[p:] == tail[:-p]:
                break
    return None


def _script(ch: str) -> str | None:
    o = ord(ch)
    if o < 0x250:
        return "latin" if ch.isalpha() else None
    if 0x370 <= o < 0x400:
        return "greek"
    if 0x400 <= o < 0x530:
        return "cyrillic"
    if 0x590 <= o < 0x600:
        return "hebrew"
    if 0x600 <= o < 0x780:
        return "arabic"
    if 0x900 <= o < 0x980:
        return "devanagari"
    if 0xE00 <= o < 0xE80:
        return "thai"
    if 0x1E00 <= o < 0x1F00:
        return "latin"
    if 0x3040 <= o < 0x3100 or 0x4E00 <= o < 0xA000 or 0x3400 <= o < 0x4DC0:
        return "cjk"
    if 0xAC00 <= o < 0xD7B0 or 0x1100 <= o < 0x1200:
        return "hangul"
    return None


def script_shares(text: str, cap: int = 4000) -> tuple[str | None, float, int]:
    """The dominant script among the letters of the first `cap` characters, its share, and the letter count."""
    counts: Counter[str] = Counter()
    for ch in text[:cap]:
        s = _script(ch) if ch.isalpha() else None
        if s:
            counts[s] += 1
    n = sum(counts.values())
    if not n:
        return None, 0.0, 0
    s, c = counts.most_common(1)[0]
    return s, c / n, n


_TRANSLATE = re.compile(r"(?i)translat|\bin (?:english|french|german|spanish|chinese|japanese|russian|korean|"
                        r"arabic|hindi|greek|hebrew|thai)\b|翻译|翻訳|перевед|번역")


def _language(request: str, answer: str) -> Finding | None:
    rs, rshare, rn = script_shares(request)
    as_, ashare, an = script_shares(answer)
    if rs and as_ and rs != as_ and rn >= 20 and an >= 20 and rshare >= 0.8 and ashare >= 0.7 and \
            not _TRANSLATE.search(request[:MAX_SCAN]):
        return Finding("wrong_language", f"the request is written in {rs} script but the answer in {as_}")
    return None


_EXPR_CHARS = frozenset("0123456789.,+-*/×÷() $")
_RHS = re.compile(r"[ \t]{0,3}(-?)[ \t]{0,2}\$?(\d{1,3}(?:,\d{3}){1,5}(?![\d,])|\d{1,15}(?:\.\d{1,8})?)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_BIN = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b}


def _eval(node: ast.AST) -> float:
    """Value of a parsed arithmetic expression of numbers, + - * / and parentheses (ValueError otherwise)."""
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        a, b = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Div) and b == 0:
            raise ValueError("division by zero")
        return _BIN[type(node.op)](a, b)
    raise ValueError("not arithmetic")


def _lhs(text: str, eq: int) -> tuple[str, bool] | None:
    """The arithmetic expression ending just before the "=" at `eq` (at most 60 characters back), and whether it
    stands alone (not the tail of a longer formula, a variable or a percentage)."""
    i = eq
    while i > 0 and eq - i < 60 and text[i - 1] in _EXPR_CHARS:
        i -= 1
    expr = text[i:eq]
    # A comma not between thousands separates items ("3, 4 + 5 = 9"): the expression starts after it.
    expr = _THOUSANDS.sub("", expr)
    if "," in expr:
        expr = expr.rsplit(",", 1)[1]
    expr = expr.replace("$", "").replace("×", "*").replace("÷", "/").strip()
    while expr.startswith(")"):
        expr = expr[1:].lstrip()
    if not expr or not any(op in expr[1:] for op in "+-*/") or expr[0] in "*/+.":
        return None
    start = eq - len(text[i:eq].lstrip())
    before = text[max(0, start - 1):start]
    alone = not (eq - i >= 60 or (before and (before.isalnum() or before in "%._^")))
    return expr, alone


def arithmetic(answer: str) -> tuple[int, list[str]]:
    """How many arithmetic statements "expression = number" the answer makes, and the wrong ones."""
    text = answer[:MAX_SCAN]
    checked, wrong = 0, []
    pos = 0
    for _ in range(2000):
        eq = text.find("=", pos)
        if eq < 0:
            break
        pos = eq + 1
        if text[eq + 1:eq + 2] == "=" or text[eq - 1:eq] in "<>!=":
            pos = eq + 2
            continue
        lhs = _lhs(text, eq)
        m = _RHS.match(text, eq + 1)
        if not lhs or not lhs[1] or not m:
            continue
        glued = text[m.end():m.end() + 2]
        after = text[m.end():m.end() + 4].lstrip()
        if (glued and (glued[0].isalnum() or glued[0] in "%^(" or (glued[0] == "." and glued[1:2].isdigit()))) or \
                (after and after[0] in "+-*/×÷^%("):
            continue  # the number is the start of another expression, or a percentage / unit glued to it
        try:
            r = _eval(ast.parse(lhs[0], mode="eval"))
        except (SyntaxError, ValueError, TypeError, OverflowError, RecursionError, MemoryError):
            continue
        c = float(m.group(2).replace(",", "")) * (-1 if m.group(1) else 1)
        checked += 1
        dec = len(m.group(2).partition(".")[2])
        tol = max(0.5001 * 10 ** -dec, 1e-9 * abs(r)) if "/" in lhs[0] or dec else max(1e-9, 1e-9 * abs(r))
        ok = abs(r - c) <= tol or (dec and abs(r - c) <= 1e-3 * abs(r))
        if not ok and "/" in lhs[0] and not dec:
            ok = c in (math.floor(r), math.ceil(r))  # "7 / 2 = 3 full boxes": a count rounded down or up
        if not ok:
            wrong.append(f"{lhs[0]} = {m.group(1)}{m.group(2)}")
        if checked >= 500:
            break
    return checked, wrong


def run_checks(messages: list[dict[str, Any]], answer: str | None, finish_reason: str | None = None,
               tool_calls: Sequence[Any] | None = None, checks: Sequence[str] | None = None) -> list[Finding]:
    """Findings of the answer checks (all of CHECKS, or those named in `checks`) on one cheap answer."""
    try:
        request = text_of(messages[last_user_index(messages)]) if messages else ""
    except (ValueError, IndexError, KeyError, TypeError):
        request = ""
    answer = answer if isinstance(answer, str) else ""
    want = set(CHECKS if checks is None else checks)
    out: list[Finding] = []
    if not answer.strip() and not tool_calls:
        if finish_reason == "length":
            out.append(Finding("truncated", "the output token limit was hit before any text"))
        return out + [Finding("empty", "the answer has no text and no tool call")] if "empty" in want else out
    blocks, open_fence = _blocks(answer)
    if "truncated" in want:
        f = _truncation(answer, finish_reason, open_fence, blocks)
        if f:
            out.append(f)
    if want & {"code_unparseable", "json_unparseable"}:
        out += [f for f in _code_checks(request, answer, blocks) if f.check in want]
        if "json_unparseable" in want:
            out += _tool_call_checks(tool_calls)
    if want & {"refusal", "ask_back"}:
        out += [f for f in _refusal_checks(answer) if f.check in want]
    if "repetition" in want:
        f = _repetition(answer)
        if f:
            out.append(f)
    if "wrong_language" in want:
        f = _language(request, answer)
        if f:
            out.append(f)
    if "arithmetic_slip" in want:
        _, wrong = arithmetic(answer)
        if wrong:
            more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
            out.append(Finding("arithmetic_slip", f"wrong arithmetic in the answer: {wrong[0]!r}{more}"))
    return out
