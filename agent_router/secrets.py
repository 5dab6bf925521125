"""The one redactor: masks API keys and tokens in any text agent_router stores, logs or shows in an error.

It masks (1) the values of the configured keys (read from the environment variables named by the settings'
`api_key_env` fields, or registered with `remember`), wherever they appear, and (2) anything shaped like a
common vendor secret: OpenAI / Anthropic `sk-...`, GitHub, AWS key ids and secret keys, Hugging Face, Slack
tokens and webhooks, JWTs, Stripe, Google, Azure keys and connection strings, PEM private key blocks and
credentials in `Authorization` / `Bearer` headers.

Every pattern is linear in the text: quantifiers are bounded, and each token pattern may only start where a
token starts (a look-behind), so a run of token characters is scanned once, never once per position.
A logging record factory masks the same secrets in every record of agent_router's and the HTTP stack's loggers.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

REDACTED = "[redacted]"
MIN_KEY_LEN = 8  # shorter values are placeholders for local servers ("dummy", "ollama"), masked they would hit words

_known: frozenset[str] = frozenset()
_known_sorted: tuple[str, ...] = ()
_known_lock = threading.Lock()

# Each pattern starts with a literal (so the regex engine finds candidates with a fast substring search), then
# checks with a look-behind that the literal starts a token: `task-manager` holds no `sk-` key, and a run of token
# characters is scanned once, never once per position. Literals with variants (`Bearer`, `bearer`, `BEARER`) are
# separate patterns, since an alternation at the start would cost a try at every position.
_TOK = r"[A-Za-z0-9_\-]"
# Between a keyword and its value: `: `, ` = "`, `"=>"`, and the same with JSON-escaped quotes (`=\\"`).
_SEP = r"""(?:\\?["'])?[ \t]{0,5}(?:=>|[:=])[ \t]{0,5}(?:\\?["'])?"""
# Keywords whose value is a credential, matched on their last word and checked by look-behinds:
# api-key / x-api-key / Ocp-Apim-Subscription-Key (Azure's 32-hex keys), AccountKey= / SharedAccessKey= (Azure
# connection strings), aws_secret_access_key, client_secret, and the sig= of an Azure SAS URL.
_KEYWORDS = "(?i:" + "|".join(
    f"(?<={w})" for w in (
        "api[-_]key", "apikey", "subscription[-_]key", "subscriptionkey", "access[-_]key", "accesskey",
        "secret[-_]key", "secretkey", "account[-_]key", "accountkey", "client[-_]secret", "clientsecret", "[?&]sig",
    )
) + ")"

# (name, literal prefixes, rest of the pattern, prefix starts a token). Applied in this order. A group named
# `keep` (a keyword) is kept; the rest of the match is masked.
_PATTERNS: tuple[tuple[str, tuple[str, ...], str, bool], ...] = (
    ("pem", ("-----BEGIN ",), r"[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[^-]|-(?!----)){0,65536}"
                              r"(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?", False),
    ("jwt", ("eyJ",), r"[A-Za-z0-9_\-]{4,8192}\.eyJ[A-Za-z0-9_\-]{4,16384}\.[A-Za-z0-9_\-]{0,8192}", True),
    # An AWS access key id, and the 40-character secret access key when it follows the id.
    ("aws", ("AKIA", "ASIA", "ABIA", "ACCA"),
     r"[A-Z0-9]{16}(?:[ \t,;:|\"'=/]{1,5}[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])|(?![A-Za-z0-9_\-]))", True),
    ("openai_anthropic", ("sk-",), r"[A-Za-z0-9_\-*]{8,512}", True),
    ("github", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), "[A-Za-z0-9]{20,255}", True),
    ("github_pat", ("github_pat_",), "[A-Za-z0-9_]{20,255}", True),
    ("huggingface", ("hf_",), "[A-Za-z0-9]{20,255}", True),
    ("slack", ("xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxo-"), r"[A-Za-z0-9\-]{10,255}", True),
    ("slack_app", ("xapp-",), r"[0-9]-[A-Za-z0-9\-]{10,255}", True),
    ("slack_webhook", ("hooks.slack.com/",), r"(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{8,255}", False),
    ("stripe", ("sk_live_", "rk_live_", "pk_live_", "sk_test_", "rk_test_", "pk_test_", "whsec_"),
     "[A-Za-z0-9]{10,255}", True),
    ("google", ("AIza",), r"[0-9A-Za-z_\-]{20,255}", True),
    ("google_oauth", ("ya29.",), r"[0-9A-Za-z_\-]{20,2048}", True),
    ("google_secret", ("GOCSPX-",), r"[0-9A-Za-z_\-]{20,255}", True),
    ("groq", ("gsk_",), "[A-Za-z0-9]{10,255}", True),
    ("xai", ("xai-",), "[A-Za-z0-9]{10,255}", True),
    ("gitlab", ("glpat-",), r"[A-Za-z0-9_\-]{20,255}", True),
    ("npm", ("npm_",), "[A-Za-z0-9]{30,255}", True),
    ("pypi", ("pypi-AgEIcHlwaS5vcmc",), r"[A-Za-z0-9_\-]{20,2048}", True),
    ("replicate", ("r8_",), "[A-Za-z0-9]{30,255}", True),
    # Credentials in `Authorization: <scheme> <credentials>` and after the word Bearer.
    ("authorization", ("Authorization", "authorization", "AUTHORIZATION"),
     "(?P<keep>" + _SEP + r"(?:[A-Za-z]{1,20}[ \t]{1,5})?)[A-Za-z0-9._~+/=\-]{8,8192}", False),
    ("bearer", ("Bearer", "bearer", "BEARER"), r"(?P<keep>[ \t]{1,5})[A-Za-z0-9._~+/=\-]{8,8192}", True),
    # The password of a URL's user info (`postgresql://user:PASSWORD@host`, a base_url with credentials).
    ("url_password", ("://",), r"(?P<keep>[^\s:/@]{1,256}:)[^\s/@]{1,256}(?=@)", False),
    ("keyword", ("key", "KEY", "Key", "secret", "SECRET", "Secret", "sig"),
     _KEYWORDS + "(?P<keep>" + _SEP + r")[A-Za-z0-9+/=_\-%]{16,1024}", False),
)


def _compile(prefix: str, rest: str, starts_token: bool) -> re.Pattern[str]:
    guard = f"(?<!{_TOK}.{{{len(prefix)}}})" if starts_token else ""
    return re.compile(re.escape(prefix) + guard + rest)


_COMPILED = tuple(
    _compile(prefix, rest, tok) for _, prefixes, rest, tok in _PATTERNS for prefix in prefixes
)


def _mask(m: re.Match[str]) -> str:
    """The replacement: the match's literal prefix stays for keyword patterns (`Bearer `, `api-key: `)."""
    if "keep" not in m.re.groupindex:
        return REDACTED
    return m.string[m.start():m.start("keep")] + m.group("keep") + REDACTED


def remember(value: str | None) -> None:
    """Register a secret's value so `redact` masks it in any text from now on (process-wide)."""
    global _known, _known_sorted
    if not value:
        return
    value = value.strip()
    if len(value) < MIN_KEY_LEN or value in _known:
        return
    with _known_lock:
        _known = _known | {value}
        # Longest first, so a key that contains another is masked whole.
        _known_sorted = tuple(sorted(_known, key=len, reverse=True))


def remembered() -> tuple[str, ...]:
    """The values `redact` masks now: a new tuple each time one is added (a memo of `redact` keys on it)."""
    return _known_sorted


def key_envs(settings: Any) -> list[str]:
    """Names of every environment variable the settings read a key from (models and transcription)."""
    names: list[str] = []
    for cfg in getattr(settings, "models", {}).values():
        names += cfg.key_envs()
    for p in getattr(getattr(settings, "providers", None), "transcription", None) or []:
        names += p.key_envs()
    return names


def remember_settings(settings: Any, env: Any = None) -> None:
    """Register the values of the keys `settings` names (from `env`, default os.environ)."""
    env = os.environ if env is None else env
    for name in key_envs(settings):
        remember(env.get(name))


def redact(text: str) -> str:
    """`text` with every configured (remembered) key and anything shaped like a secret masked. Linear."""
    for v in _known_sorted:
        if v in text:
            text = text.replace(v, REDACTED)
    for pattern in _COMPILED:
        text = pattern.sub(_mask, text)
    return text


# -- logs ---------------------------------------------------------------------------------------------------
# The gateway serves HTTP through aiohttp (aiohttp.server, .access, .web...); the sync provider client is httpx.
LOGGERS = ("agent_router", "aiohttp", "httpx", "httpcore", "h11", "h2", "hpack", "urllib3", "openai", "anthropic")
_installed = False


def _scoped(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in LOGGERS)


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask secrets in a log record's message, exception text and stack (in place; returns it)."""
    try:
        msg = record.getMessage()
    except Exception:  # a malformed format string: keep the record as logged, masked
        msg = f"{record.msg} {record.args!r}"
    clean = redact(msg)
    if clean != msg or record.args:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFilter(logging.Filter):
    """A filter for handlers that are not covered by the record factory (it masks; it never drops)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_log_redaction() -> None:
    """Mask secrets in every record of agent_router's and the HTTP stack's loggers, at every level.

    Installed once, as a record factory wrapping the current one: it sees a record only after the logger's level
    check passed, so disabled DEBUG logging costs nothing; other loggers' records pass untouched."""
    global _installed
    with _known_lock:
        if _installed:
            return
        base = logging.getLogRecordFactory()

        def factory(*args: Any, **kw: Any) -> logging.LogRecord:
            record = base(*args, **kw)
            return redact_record(record) if _scoped(record.name) else record

        logging.setLogRecordFactory(factory)
        _installed = True


install_log_redaction()
