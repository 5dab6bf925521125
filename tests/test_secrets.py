"""The one redactor (agent_router.secrets): every common vendor's key format is masked, directly and in the
ledger's stored prompts; configured keys never reach a log line; ordinary text passes through unchanged."""

from __future__ import annotations

import json
import logging
import random
import string

import pytest

from agent_router import secrets
from agent_router.ledger import Ledger
from agent_router.providers import AllModelsFailed, ProviderClient
from agent_router.settings import Settings
from agent_router.usage import Usage

from .providers_fixtures import BAD_KEY, GOOD_KEYS, FakeLLM

R = secrets.REDACTED
_rng = random.Random(12)


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


HEX = "0123456789abcdef"
B64 = string.ascii_letters + string.digits + "+/"
# Realistic fake keys, assembled at import so no file holds a key-shaped literal. (name -> (text, secret)).
_pem_body = "\n".join(_rand(64, B64) for _ in range(6))
SAMPLES: dict[str, tuple[str, str]] = {}
for _name, _secret, _template in [
    ("openai", "sk-" + _rand(48), "OPENAI_API_KEY={s} in my shell"),
    ("openai_project", "sk-proj-" + _rand(40) + "_" + _rand(40), "use key {s} please"),
    ("anthropic", "sk-ant-api03-" + _rand(86, string.ascii_letters + string.digits + "-_") + "AA",
     "export ANTHROPIC_API_KEY='{s}'"),
    ("github_classic", "ghp_" + _rand(36), "git clone https://{s}@github.com/o/r"),
    ("github_oauth", "gho_" + _rand(36), "token {s}"),
    ("github_user", "ghu_" + _rand(36), "token={s};"),
    ("github_server", "ghs_" + _rand(36), "GH token: {s}"),
    ("github_refresh", "ghr_" + _rand(36), "refresh with {s}."),
    ("github_fine_grained", "github_pat_" + _rand(22) + "_" + _rand(59), "PAT {s}"),
    ("aws_key_id", "AKIA" + _rand(16, string.ascii_uppercase + string.digits), "aws id {s} region us-east-1"),
    ("aws_session_id", "ASIA" + _rand(16, string.ascii_uppercase + string.digits), "id={s}"),
    ("aws_secret_keyword", _rand(40, B64), "aws_secret_access_key = {s}"),
    ("aws_secret_env", _rand(40, B64), 'AWS_SECRET_ACCESS_KEY="{s}"'),
    ("huggingface", "hf_" + _rand(34), "HF_TOKEN={s}"),
    ("slack_bot", "xoxb-" + _rand(12, string.digits) + "-" + _rand(13, string.digits) + "-" + _rand(24),
     "slack {s}"),
    ("slack_user", "xoxp-" + _rand(12, string.digits) + "-" + _rand(24), "slack {s}"),
    ("slack_app", "xoxa-2-" + _rand(30), "slack {s}"),
    ("slack_refresh", "xoxr-" + _rand(40), "slack {s}"),
    ("slack_session", "xoxs-" + _rand(40), "slack {s}"),
    ("slack_webhook", "hooks.slack.com/services/T" + _rand(8, string.ascii_uppercase + string.digits)
     + "/B" + _rand(8, string.ascii_uppercase + string.digits) + "/" + _rand(24), "post to https://{s} now"),
    ("jwt", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
     + _rand(43, string.ascii_letters + string.digits + "-_"), "cookie session={s}; path=/"),
    ("stripe_secret", "sk_live_" + _rand(24), "stripe {s}"),
    ("stripe_restricted", "rk_live_" + _rand(24), "stripe {s}"),
    ("stripe_test", "sk_test_" + _rand(24), "stripe {s}"),
    ("stripe_publishable", "pk_live_" + _rand(24), "stripe {s}"),
    ("google", "AIza" + _rand(35, string.ascii_letters + string.digits + "-_"), "?key={s}&q=1"),
    ("azure_api_key_header", _rand(32, HEX), "api-key: {s}"),
    ("azure_apim_header", _rand(32, HEX), "Ocp-Apim-Subscription-Key: {s}"),
    ("azure_json", _rand(32, HEX), '{{"azure_openai_api_key": "{s}"}}'),
    ("azure_connection_string", _rand(86, B64) + "==",
     "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={s};EndpointSuffix=core.windows.net"),
    ("pem_rsa", f"-----BEGIN RSA PRIVATE KEY-----\n{_pem_body}\n-----END RSA PRIVATE KEY-----", "key:\n{s}\nend"),
    ("pem_openssh", f"-----BEGIN OPENSSH PRIVATE KEY-----\n{_pem_body}\n-----END OPENSSH PRIVATE KEY-----",
     "{s}"),
    ("pem_encrypted", "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,"
     + _rand(32, HEX.upper()) + f"\n\n{_pem_body}\n-----END RSA PRIVATE KEY-----", "{s}"),
    ("bearer_header", _rand(40, string.ascii_letters + string.digits + "._-"), "Authorization: Bearer {s}"),
    ("basic_header", _rand(28, B64) + "=", "authorization: Basic {s}"),
    ("bearer_curl", _rand(40), "curl -H 'Authorization: Bearer {s}' https://x"),
]:
    SAMPLES[_name] = (_template.format(s=_secret), _secret)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_redact_masks_each_vendor_format(name):
    text, secret = SAMPLES[name]
    out = secrets.redact(text)
    assert secret not in out and R in out
    # Only the secret goes: the words around it stay.
    for word in text.replace(secret, " ").split():
        if len(word) > 3 and word.isalpha():
            assert word in out


def test_aws_secret_after_key_id_is_masked_with_it():
    key_id = "AKIA" + _rand(16, string.ascii_uppercase + string.digits)
    secret = _rand(40, B64)
    for sep in (" ", ",", ":", "\t"):
        out = secrets.redact(f"creds {key_id}{sep}{secret} done")
        assert key_id not in out and secret not in out and out.startswith("creds ") and out.endswith(" done")


def test_unterminated_private_key_block_is_still_masked():
    out = secrets.redact(f"-----BEGIN PRIVATE KEY-----\n{_pem_body}")
    assert _pem_body[:64] not in out and out == R


def test_keyword_is_kept_and_only_the_value_masked():
    hexkey = _rand(32, HEX)
    assert secrets.redact(f"api-key: {hexkey}") == f"api-key: {R}"
    assert secrets.redact(f"Authorization: Bearer {hexkey}") == f"Authorization: Bearer {R}"


def test_configured_key_values_are_masked_wherever_they_appear(monkeypatch):
    plain = "plain-value-" + _rand(20)  # shaped like no vendor's key
    monkeypatch.setenv("MY_ODD_KEY", plain)
    s = Settings.model_validate({"models": {"m": {"provider": "openai", "name": "m", "api_key_env": "MY_ODD_KEY"}},
                                 "tiers": {"utility": ["m"], "chat": ["m"], "premium": ["m"]}})
    assert plain in secrets.redact(f"x{plain}y")  # not yet known
    secrets.remember_settings(s)
    assert secrets.redact(f"x{plain}y") == f"x{R}y"


def test_ordinary_text_of_a_megabyte_passes_unchanged():
    parts = [
        "The router picks the cheapest model. ", "def task_manager(risk_assessment): return disk-usage\n",
        "/usr/local/lib/python3.11/site-packages/", "pip install scikit-learn sk-learn ", "0x" + _rand(64, HEX) + " ",
        "AKIAB is not a key; ASIAN markets; ", "eyJ alone, eyJhbGciOiJIUzI1NiJ9 without payload ",
        "Bearer of bad news. ", "the api key is in the vault; ", "monkey: banana ", "hf_ ghp_ sk- xoxb- ",
        "sha256:" + _rand(64, HEX) + " ", "-----BEGIN CERTIFICATE-----\nMIIB" + _rand(60, B64) + "\n",
        json.dumps({"key": "user_preferences_theme", "secret": "no"}), "ünïcödé 日本語 🚀 ",
    ]
    chunks = []
    size = 0
    while size < 1_000_000:
        p = _rng.choice(parts)
        chunks.append(p)
        size += len(p)
    text = "".join(chunks)
    assert secrets.redact(text) == text


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_ledger_store_prompts_masks_each_vendor_format(tmp_path, name):
    text, secret = SAMPLES[name]
    s = Settings()
    s.ledger.store_prompts = True
    led = Ledger(tmp_path / "l.db", s)
    led.record("gpt-4.1-nano", Usage(input=5, output=5), prompt=[{"role": "user", "content": text}])
    stored = led.store.read("SELECT prompt FROM calls")[0]["prompt"]
    led.close()
    assert R in stored and secret not in stored and json.dumps(secret)[1:-1] not in stored
    assert b"".join(p.read_bytes() for p in tmp_path.iterdir()).find(secret.encode()) == -1


# --- logs ------------------------------------------------------------------------------------------------
def test_no_log_line_at_debug_prints_a_configured_key(caplog):
    """A real call and a refused key against a local server, with every logger (agent_router, httpx, httpcore)
    at DEBUG: neither key appears in any record, formatted message or exception text."""
    good = sorted(GOOD_KEYS)[0]
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "agent_router"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    with FakeLLM() as llm:
        s = Settings.model_validate({
            "models": {"m": {"provider": "openai", "name": "gpt-x", "base_url": llm.url + "/v1",
                             "api_key_env": "TEST_KEY"}},
            "tiers": {"utility": ["m"], "chat": ["m"], "premium": ["m"]},
            "providers": {"timeout_s": 2, "max_retries": 0},
        })
        assert ProviderClient(s, env={"TEST_KEY": good}).complete("m", [{"role": "user", "content": "hi"}]).text
        with pytest.raises(AllModelsFailed):
            ProviderClient(s, env={"TEST_KEY": BAD_KEY}).complete("m", [{"role": "user", "content": "hi"}])
        # A careless log call of our own with the key in its arguments and in an exception is masked too.
        log = logging.getLogger("agent_router.providers")
        log.debug("headers %s", {"Authorization": f"Bearer {BAD_KEY}"})
        try:
            raise RuntimeError(f"refused {good}")
        except RuntimeError:
            log.exception("call failed for %s", good)
    assert len(caplog.records) > 5 and any(r.name.startswith("httpcore") for r in caplog.records)
    text = caplog.text + "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.args!r} {r.msg!r}" for r in caplog.records
    )
    assert good not in text and BAD_KEY not in text
    assert "refused [redacted]" in text


@pytest.mark.parametrize("name", ["aiohttp.server", "aiohttp.access", "aiohttp.client"])
def test_the_gateways_http_stack_logs_are_masked(caplog, name):
    """`agent-router serve` runs on aiohttp: its server errors, access lines (when a user turns them on) and the
    provider client's records go through the same redaction as agent_router's own."""
    caplog.set_level(logging.INFO)
    key = sorted(GOOD_KEYS)[0]
    logging.getLogger(name).warning('127.0.0.1 "POST /v1/chat/completions?api_key=%s" 401 Authorization: Bearer %s',
                                    key, BAD_KEY)
    line = caplog.records[-1].getMessage()
    assert key not in line and BAD_KEY not in line and "401" in line and "[redacted]" in line


def test_other_loggers_records_are_left_alone(caplog):
    caplog.set_level(logging.INFO)
    logging.getLogger("someapp").info("token sk-%s", "A" * 30)
    assert caplog.records[-1].getMessage() == "token sk-" + "A" * 30


def test_short_placeholder_keys_do_not_mask_ordinary_words():
    secrets.remember("dummy")  # what local OpenAI-compatible servers are often given as a key
    assert secrets.redact("a dummy variable") == "a dummy variable"


def test_password_in_a_url_is_masked_and_the_rest_kept():
    text = "cannot reach https://svc:hunter2-Secret@example.invalid/v1 (postgresql://app:p%40ss@127.0.0.1/db)"
    out = secrets.redact(text)
    assert "hunter2" not in out and "p%40ss" not in out
    assert "https://svc:[redacted]@example.invalid/v1" in out and "postgresql://app:[redacted]@127.0.0.1/db" in out
    assert secrets.redact("see https://example.invalid/a:b/c@d") == "see https://example.invalid/a:b/c@d"
