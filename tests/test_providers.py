"""ProviderClient and TranscriptionPool against real HTTP servers on 127.0.0.1 (see providers_fixtures.py)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from agent_router.providers import AllModelsFailed, ProviderClient, ProviderError, StreamBroken, TranscriptionPool
from agent_router.providers import types as t
from agent_router.router import Router
from agent_router.settings import Settings

from .providers_fixtures import BAD_BODIES, BAD_EVENTS, BAD_KEY, GOOD_KEYS, USAGE, FakeLLM

GOOD = sorted(GOOD_KEYS)[0]
SECOND = sorted(GOOD_KEYS)[1]
FORMATS = ["openai", "anthropic", "gemini"]
PREFIX = {"openai": "/v1", "anthropic": "/v1", "gemini": "/v1beta"}
FAST = {
    "timeout_s": 3.0,
    "connect_timeout_s": 3.0,
    "backoff_base_s": 0.01,
    "backoff_max_s": 0.05,
    "max_retry_wait_s": 1.0,
    "max_retries": 1,
}


def model(url: str, fmt: str, name: str, **kw: Any) -> dict[str, Any]:
    return {
        "provider": fmt,
        "name": name,
        "base_url": url + PREFIX[fmt],
        "api_key_env": "TEST_KEY",
        "capabilities": {"vision": True},
        **kw,
    }


def settings_for(
    models: dict[str, dict[str, Any]], fallbacks: dict[str, list[str]] | None = None, **providers: Any
) -> Settings:
    aliases = list(models)
    tiers = {"utility": [aliases[0]], "chat": [aliases[min(1, len(aliases) - 1)]], "premium": [aliases[-1]]}
    return Settings.model_validate(
        {
            "models": models,
            "tiers": tiers,
            "routing": {"fallbacks": fallbacks or {}},
            "providers": {**FAST, **providers},
        }
    )


def client_for(
    s: Settings, env: dict[str, str] | None = None, **kw: Any
) -> tuple[ProviderClient, list[dict]]:
    records: list[dict] = []
    c = ProviderClient(s, env=env if env is not None else {"TEST_KEY": GOOD}, on_attempt=records.append, **kw)
    return c, records


def one(llm: FakeLLM, fmt: str, **kw: Any) -> tuple[ProviderClient, list[dict]]:
    return client_for(settings_for({"m": model(llm.url, fmt, f"{fmt}-model")}, **kw))


USER = [{"role": "user", "content": "Say hello"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


# --- wire formats ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_success_text_usage_model_latency(llm, fmt):
    c, records = one(llm, fmt)
    out = c.complete("m", USER, max_tokens=50)
    assert out.text == f"Hello from {fmt}-model"
    assert out.finish_reason == "stop"
    assert out.usage.input_tokens == USAGE["input"]
    assert out.usage.output_tokens == USAGE["output"]
    assert out.usage.cached_input_tokens == USAGE["cached"]
    assert out.usage.source == "provider"
    assert out.model.startswith(f"{fmt}-model") and out.alias == "m" and out.provider == fmt
    assert out.latency_ms > 0
    (rec,) = records
    assert rec["outcome"] == "ok" and rec["model"] == "m" and rec["model_name"] == f"{fmt}-model"
    assert rec["input_tokens"] == USAGE["input"] and rec["output_tokens"] == USAGE["output"]
    assert rec["fallback_of"] is None and rec["attempt"] == 1 and rec["token_source"] == "provider"


def test_reasoning_tokens_parsed(llm):
    c, _ = one(llm, "openai")
    assert c.complete("m", USER).usage.reasoning_tokens == 3
    c, _ = one(llm, "gemini")
    u = c.complete("m", USER).usage
    assert u.reasoning_tokens == 3 and u.output_tokens == USAGE["output"]  # thinking billed as output


@pytest.mark.parametrize("fmt", FORMATS)
def test_streaming_with_usage(llm, fmt):
    c, records = one(llm, fmt)
    deltas = list(c.stream("m", USER))
    text = "".join(d.text for d in deltas)
    final = deltas[-1].completion
    assert text == f"Hello from {fmt}-model" == final.text
    assert len([d for d in deltas if d.text]) == 2
    assert final.usage.input_tokens == USAGE["input"] and final.usage.output_tokens == USAGE["output"]
    assert final.usage.source == "provider" and final.ttft_ms is not None
    assert records[-1]["outcome"] == "ok" and records[-1]["output_tokens"] == USAGE["output"]
    if fmt == "openai":
        assert llm.requests[-1]["body"]["stream_options"] == {"include_usage": True}


def test_stream_options_rejected_is_retried_without(llm):
    c, records = one(llm, "openai")
    llm.fault("openai-model", "nostreamopts")
    deltas = list(c.stream("m", USER))
    assert deltas[-1].completion.text == "Hello from openai-model"
    assert "stream_options" not in llm.requests[-1]["body"]
    # No usage on the stream: counted offline instead, and flagged as such.
    assert records[-1]["token_source"] in ("counted", "estimated") and records[-1]["input_tokens"] > 0
    list(c.stream("m", USER))
    assert "stream_options" not in llm.requests[-1]["body"]  # remembered for this endpoint


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_request_answered_in_one_piece(llm, fmt):
    c, records = one(llm, fmt)
    llm.fault(f"{fmt}-model", "nostream")
    deltas = list(c.stream("m", USER))
    assert [d.text for d in deltas[:-1]] == [f"Hello from {fmt}-model"]
    assert deltas[-1].completion.usage.input_tokens == USAGE["input"] and records[-1]["outcome"] == "ok"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_round_trip(llm, fmt, stream):
    c, _ = one(llm, fmt)
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]

    def call(m):
        if stream:
            deltas = list(c.stream("m", m, tools=TOOLS, tool_choice="auto"))
            assert [d.tool_call.name for d in deltas if d.tool_call] == (["get_weather"] if m is msgs else [])
            return deltas[-1].completion
        return c.complete("m", m, tools=TOOLS, tool_choice="auto")

    out = call(msgs)
    assert out.finish_reason == "tool_calls"
    (tc,) = out.tool_calls
    assert tc.name == "get_weather" and json.loads(tc.arguments) == {"city": "Paris"}
    # Feed the result back: the server checks each format's turn rules (alternation, tool_result blocks).
    follow = [*msgs, out.message(), {"role": "tool", "tool_call_id": tc.id, "content": '{"temp_c": 18}'}]
    out2 = call(follow)
    assert out2.text == f"Hello from {fmt}-model" and out2.finish_reason == "stop"
    body = llm.requests[-1]["body"]
    if fmt == "anthropic":
        assert body["tools"][0]["input_schema"]["properties"]["city"]["type"] == "string"
        assert body["tool_choice"] == {"type": "auto"}
        assert body["messages"][-1]["content"][0] == {
            "type": "tool_result",
            "tool_use_id": tc.id,
            "content": '{"temp_c": 18}',
        }
    elif fmt == "gemini":
        assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
        assert body["contents"][-1]["parts"][0]["functionResponse"] == {
            "name": "get_weather",
            "response": {"temp_c": 18},
        }
    else:
        assert body["messages"][-1]["role"] == "tool" and body["tools"] == TOOLS


PNG = "data:image/png;base64,iVBORw0KGgo="


@pytest.mark.parametrize("fmt", FORMATS)
def test_vision_system_prompt_json_mode_on_the_wire(llm, fmt):
    c, _ = one(llm, fmt)
    msgs = [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": PNG}},
            ],
        },
    ]
    out = c.complete("m", msgs, json_mode=True, max_tokens=20, temperature=0.1)
    assert out.text
    body = llm.requests[-1]["body"]
    if fmt == "anthropic":
        assert body["system"].startswith("You are terse.") and "JSON" in body["system"]
        img = body["messages"][0]["content"][1]
        assert img == {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        }
        assert body["max_tokens"] == 20
    elif fmt == "gemini":
        assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
        assert body["contents"][0]["parts"][1] == {
            "inline_data": {"mime_type": "image/png", "data": "iVBORw0KGgo="}
        }
        assert body["generationConfig"] == {
            "maxOutputTokens": 20,
            "temperature": 0.1,
            "responseMimeType": "application/json",
        }
        assert (
            llm.requests[-1]["headers"]["x-goog-api-key"] == GOOD and "key=" not in llm.requests[-1]["path"]
        )
    else:
        assert body["messages"] == msgs and body["response_format"] == {"type": "json_object"}
        assert body["max_completion_tokens"] == 20  # OpenAI's reasoning models refuse max_tokens


# --- faults, per wire format ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_429_honours_retry_after(llm, fmt, clock):
    c, records = client_for(settings_for({"m": model(llm.url, fmt, f"{fmt}-model")}), clock=clock, sleep=clock.sleep)
    llm.fault(f"{fmt}-model", "429:0.3")
    out = c.complete("m", USER)
    assert clock.slept == [0.3]
    assert out.text.startswith("Hello")
    assert [r["error_kind"] for r in records] == ["rate_limit", None]
    assert records[1]["fallback_of"] == records[0]["id"] and records[1]["attempt"] == 2


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "fault,kind",
    [
        ("500", "server"),
        ("reset", "connect"),
        ("malformed", "malformed"),
        ("cut", "connect"),
    ],
)
def test_transient_fault_is_retried(llm, fmt, fault, kind):
    c, records = one(llm, fmt, timeout_s=0.3)
    llm.fault(f"{fmt}-model", fault)
    out = c.complete("m", USER)
    assert out.text == f"Hello from {fmt}-model"
    assert [r["outcome"] for r in records] == ["error", "ok"]
    assert records[0]["error_kind"] == kind


@pytest.mark.parametrize("fmt", FORMATS)
def test_fault_beyond_retries_raises_clear_error(llm, fmt):
    c, records = one(llm, fmt, max_retries=1)
    llm.fault(f"{fmt}-model", "500", "500", "500")
    with pytest.raises(AllModelsFailed) as ei:
        c.complete("m", USER)
    assert ei.value.kind == "server" and "m: server" in str(ei.value)
    assert len(records) == 2 and llm.count(f"{fmt}-model") == 2


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("chunked", [True, False])
def test_stream_cut_midway_is_reported_not_truncated(llm, fmt, chunked):
    c, records = one(llm, fmt, fallbacks=None)
    llm.fault(f"{fmt}-model", "cut" if chunked else "cut_clean")
    got = []
    with pytest.raises(StreamBroken) as ei:
        for d in c.stream("m", USER):
            got.append(d.text)
    assert "".join(got) == "Hello"  # what arrived was delivered, then a clear error
    assert ei.value.kind == "stream_broken"
    assert records[-1]["outcome"] == "stream_broken" and records[-1]["error_kind"] == "stream_broken"
    assert llm.count(f"{fmt}-model") == 1  # never retried or failed over after output was emitted


@pytest.mark.parametrize("fmt", FORMATS)
def test_wrong_key_is_set_aside_and_next_key_used(llm, fmt):
    s = settings_for({"m": model(llm.url, fmt, f"{fmt}-model", api_key_env=["BAD_KEY", "OK_KEY"])})
    c, records = client_for(s, env={"BAD_KEY": BAD_KEY, "OK_KEY": GOOD})
    for _ in range(3):
        assert c.complete("m", USER).text.startswith("Hello")
    assert [r["error_kind"] for r in records].count("auth") == 1  # set aside after its first failure
    assert all(BAD_KEY not in json.dumps(r) for r in records)


@pytest.mark.parametrize("fmt", FORMATS)
def test_only_wrong_key_raises_auth_error(llm, fmt):
    s = settings_for({"m": model(llm.url, fmt, f"{fmt}-model")})
    c, records = client_for(s, env={"TEST_KEY": BAD_KEY})
    with pytest.raises(AllModelsFailed) as ei:
        c.complete("m", USER)
    assert ei.value.kind == "auth"
    assert records[0]["error_kind"] == "auth" and records[0]["status"] in (400, 401)
    assert BAD_KEY not in str(ei.value) and BAD_KEY not in records[0]["error"]


def test_keys_rotate_round_robin(llm):
    s = settings_for({"m": model(llm.url, "openai", "rr-model", api_key_env=["K1", "K2"])})
    c, _ = client_for(s, env={"K1": GOOD, "K2": SECOND})
    for _ in range(4):
        c.complete("m", USER)
    used = [r["headers"]["Authorization"][7:] for r in llm.requests]
    assert used in ([GOOD, SECOND, GOOD, SECOND], [SECOND, GOOD, SECOND, GOOD])


def test_rate_limited_key_rotates_to_the_other_key_at_once(llm, clock):
    s = settings_for({"m": model(llm.url, "openai", "rl-model", api_key_env=["K1", "K2"])})
    c, records = client_for(s, env={"K1": GOOD, "K2": SECOND}, clock=clock, sleep=clock.sleep)
    llm.fault("rl-model", "429:30")
    assert c.complete("m", USER).text
    assert clock.slept == []  # no wait: the other key was used at once
    keys = [r["headers"]["Authorization"][7:] for r in llm.requests]
    assert len(set(keys)) == 2


# --- failover -------------------------------------------------------------------------------------------
def test_failover_reaches_a_healthy_model_without_waiting_out_the_broken_ones(llm, clock):
    # A hangs past the timeout, B fails with 500 twice, C answers: every wire format on the chain.
    models = {
        "a": model(llm.url, "openai", "slow"),
        "b": model(llm.url, "anthropic", "broken"),
        "c": model(llm.url, "gemini", "healthy"),
    }
    s = settings_for(models, fallbacks={"a": ["b", "c"]}, timeout_s=0.4, max_retries=1)
    c, records = client_for(s, clock=clock, sleep=clock.sleep)
    llm.fault("slow", "timeout")
    llm.fault("broken", "500", "500")
    out = c.complete("a", USER)
    assert out.alias == "c" and out.text == "Hello from healthy"
    assert [(r["model"], r["outcome"], r["error_kind"]) for r in records] == [
        ("a", "error", "timeout"),  # a timeout fails over at once: no second wait on the same model
        ("b", "error", "server"),
        ("b", "error", "server"),
        ("c", "ok", None),
    ]
    assert [r["fallback_of"] for r in records[1:]] == [r["id"] for r in records[:-1]]
    assert [r["attempt"] for r in records] == [1, 2, 3, 4]
    assert len(clock.slept) == 1 and clock.slept[0] <= s.providers.backoff_max_s  # one short backoff, on b only


def test_429_beyond_budget_fails_over_and_cools_the_model(llm, clock):
    s = settings_for(
        {"a": model(llm.url, "openai", "limited"), "b": model(llm.url, "openai", "spare")},
        fallbacks={"a": ["b"]},
        max_retry_wait_s=1.0,
    )
    c, records = client_for(s, clock=clock, sleep=clock.sleep)
    assert c.complete("a", USER).alias == "a"
    llm.fault("limited", "429:60")
    assert c.complete("a", USER).alias == "b"
    assert clock.slept == []  # a 60 s Retry-After beyond max_retry_wait_s: failed over, not waited
    assert c.complete("a", USER).alias == "b"
    assert llm.count("limited") == 2  # not asked again while its Retry-After runs
    assert c.limiter.limits("a", None) == {"rpm": 1}  # learned from the 429 (settings gave none)


def test_context_length_fails_over_to_a_larger_window(llm):
    models = {
        "small": model(llm.url, "openai", "small", context_window=8192),
        "same": model(llm.url, "openai", "same", context_window=8192),
        "big": model(llm.url, "anthropic", "big", context_window=200000),
    }
    s = settings_for(models, fallbacks={"small": ["same", "big"]})
    c, records = client_for(s)
    llm.fault("small", "context")
    out = c.complete("small", USER)
    assert out.alias == "big" and llm.count("same") == 0
    assert records[0]["error_kind"] == "context_length"


@pytest.mark.parametrize("fmt", FORMATS)
def test_content_policy_fails_over(llm, fmt):
    s = settings_for(
        {"a": model(llm.url, fmt, "strict"), "b": model(llm.url, "openai", "lenient")}, fallbacks={"a": ["b"]}
    )
    c, records = client_for(s)
    llm.fault("strict", "policy")
    assert c.complete("a", USER).alias == "b"
    assert records[0]["error_kind"] == "content_policy" and llm.count("strict") == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_withheld_answer_is_a_content_policy_error_and_fails_over(llm, fmt):
    s = settings_for(
        {"a": model(llm.url, fmt, "shy"), "b": model(llm.url, "openai", "frank")}, fallbacks={"a": ["b"]}
    )
    c, records = client_for(s)
    llm.fault("shy", "filtered")
    assert c.complete("a", USER).alias == "b"
    assert records[0]["error_kind"] == "content_policy"


def test_half_open_probe_answered_with_request_error_closes_the_breaker(llm, clock):
    s = settings_for(
        {"a": model(llm.url, "openai", "wobbly"), "b": model(llm.url, "openai", "calm")},
        fallbacks={"a": ["b"]},
        max_retries=0,
        failure_threshold=1,
        cooldown_s=0.2,
    )
    c, _ = client_for(s, clock=clock, sleep=clock.sleep)
    llm.fault("wobbly", "500", "policy")
    assert c.complete("a", USER).alias == "b"  # trips the breaker
    assert c.complete("a", USER).alias == "b" and llm.count("wobbly") == 1  # cooling down: skipped
    clock.advance(0.25)
    assert c.complete("a", USER).alias == "b"  # the probe reaches the model, which refuses this request
    assert c.complete("a", USER).alias == "a"  # the model answered, so it is healthy again
    assert llm.count("wobbly") == 3


def test_bad_request_does_not_fail_over(llm):
    s = settings_for(
        {"a": model(llm.url, "anthropic", "picky"), "b": model(llm.url, "openai", "other")},
        fallbacks={"a": ["b"]},
    )
    c, _ = client_for(s)
    with pytest.raises(ProviderError) as ei:
        c.complete(
            "a", [{"role": "assistant", "content": "I speak first"}]
        )  # Anthropic: must start with user
    assert ei.value.kind == "bad_request" and "alternate" in str(ei.value)
    assert llm.count("other") == 0


def test_stream_fails_over_before_first_delta(llm):
    s = settings_for(
        {"a": model(llm.url, "openai", "down"), "b": model(llm.url, "anthropic", "up")},
        fallbacks={"a": ["b"]},
        max_retries=0,
    )
    c, records = client_for(s)
    llm.fault("down", "500")
    deltas = list(c.stream("a", USER))
    assert deltas[-1].completion.alias == "b" and "".join(d.text for d in deltas) == "Hello from up"


def test_router_decision_drives_the_chain(llm):
    models = {
        "u": model(llm.url, "openai", "util"),
        "c": model(llm.url, "gemini", "chat"),
        "p": model(llm.url, "anthropic", "prem"),
    }
    s = settings_for(models)
    d = Router(s).route(USER)
    c, records = client_for(s)
    llm.fault(d.model_name, "503", "503")
    out = c.complete(d, USER)
    assert out.alias == d.fallbacks[0] and records[0]["model"] == d.model


def test_missing_key_skips_to_next_model(llm):
    s = settings_for(
        {
            "a": model(llm.url, "openai", "nokey", api_key_env="UNSET_KEY"),
            "b": model(llm.url, "openai", "haskey"),
        },
        fallbacks={"a": ["b"]},
    )
    c, records = client_for(s)
    assert c.complete("a", USER).alias == "b"
    assert llm.count("nokey") == 0 and [r["model"] for r in records] == ["b"]


def test_keyless_local_endpoint(llm):
    server = FakeLLM(valid_keys=set())
    with server:
        s = settings_for(
            {"local": {"provider": "ollama", "name": "llama3.2", "base_url": server.url + "/v1"}}
        )
        c, _ = client_for(s, env={})
        assert c.complete("local", USER, max_tokens=9).text == "Hello from llama3.2"
        assert server.requests[-1]["body"]["max_tokens"] == 9  # other servers know only max_tokens
        assert "Authorization" not in server.requests[-1]["headers"]


# --- health and limits ----------------------------------------------------------------------------------
def test_cooldown_then_half_open_probe(llm, clock):
    s = settings_for(
        {"a": model(llm.url, "openai", "flaky"), "b": model(llm.url, "openai", "steady")},
        fallbacks={"a": ["b"]},
        max_retries=0,
        failure_threshold=2,
        cooldown_s=1.0,
    )
    c, _ = client_for(s, clock=clock, sleep=clock.sleep)
    llm.fault("flaky", "500", "500", "500")
    assert c.complete("a", USER).alias == "b"
    assert c.complete("a", USER).alias == "b"  # second failure opens the breaker
    assert c.cooling_down() == ["a"]
    assert c.complete("a", USER).alias == "b"
    assert llm.count("flaky") == 2  # skipped while cooling down
    clock.advance(1.05)
    assert c.complete("a", USER).alias == "b"  # the probe fails (third 500): cools again
    assert llm.count("flaky") == 3
    assert c.complete("a", USER).alias == "b" and llm.count("flaky") == 3
    clock.advance(1.05)
    assert c.complete("a", USER).alias == "a"  # probe succeeds: closed again
    assert c.complete("a", USER).alias == "a"


def test_configured_rpm_limit_fails_over_instead_of_a_429(llm):
    s = settings_for(
        {
            "a": model(llm.url, "openai", "rpm2", rate_limits={"rpm": 2}),
            "b": model(llm.url, "openai", "other"),
        },
        fallbacks={"a": ["b"]},
        max_retry_wait_s=0.5,
    )
    c, _ = client_for(s)
    assert [c.complete("a", USER).alias for _ in range(3)] == ["a", "a", "b"]
    assert llm.count("rpm2") == 2


def test_exhausted_quota_header_on_success_makes_the_next_call_wait(llm, clock):
    c, records = client_for(settings_for({"m": model(llm.url, "openai", "openai-model")}), clock=clock,
                            sleep=clock.sleep)
    llm.fault("openai-model", "exhausted")
    c.complete("m", USER)
    c.complete("m", USER)
    assert sum(clock.slept) == pytest.approx(0.3, abs=0.01)  # waited for the announced reset, not a 429
    assert [r["outcome"] for r in records] == ["ok", "ok"]


def test_input_tpm_limit_counts_tokens(llm):
    s = settings_for(
        {
            "a": model(llm.url, "openai", "tpm", rate_limits={"input_tpm": 25}),
            "b": model(llm.url, "openai", "other"),
        },
        fallbacks={"a": ["b"]},
        max_retry_wait_s=0.5,
    )
    c, _ = client_for(s)
    assert c.complete("a", USER).alias == "a"  # server reports 21 input tokens
    assert c.complete("a", USER).alias == "b"  # 21 + this request's estimate (6) > 25


def test_deadline_bounds_the_whole_call(llm):
    s = settings_for(
        {"a": model(llm.url, "openai", "hang1"), "b": model(llm.url, "openai", "hang2")},
        fallbacks={"a": ["b"]},
        timeout_s=5.0,
        deadline_s=0.6,
    )
    c, _ = client_for(s)
    llm.fault("hang1", "timeout")
    llm.fault("hang2", "timeout")
    t0 = time.monotonic()
    with pytest.raises(AllModelsFailed):
        c.complete("a", USER)
    assert time.monotonic() - t0 < 1.5


def test_shared_state_is_injectable(llm):
    from agent_router.providers import MemoryState

    shared = MemoryState()
    s = settings_for(
        {"a": model(llm.url, "openai", "x"), "b": model(llm.url, "openai", "y")},
        fallbacks={"a": ["b"]},
        max_retries=0,
        failure_threshold=1,
        cooldown_s=60,
    )
    c1, _ = client_for(s, state=shared)
    c2, _ = client_for(s, state=shared)
    llm.fault("x", "500")
    assert c1.complete("a", USER).alias == "b"
    assert c2.complete("a", USER).alias == "b" and llm.count("x") == 1  # c2 sees c1's cooldown


# --- hostile servers: wrong shapes, drips, hangs, rejected and unusable keys ----------------------------
HANG_GUARD_S = 20.0  # far above every bound under test; only catches a call that would hang for minutes


def _pair(llm: FakeLLM, fmt: str, bad: str, good: str, **kw: Any) -> tuple[ProviderClient, list[dict]]:
    """Model a (on `bad`) fails over to model b (on `good`), both in wire format `fmt`."""
    s = settings_for(
        {"a": model(llm.url, fmt, bad), "b": model(llm.url, fmt, good)}, fallbacks={"a": ["b"]}, **kw
    )
    return client_for(s)


@pytest.mark.parametrize(
    "fmt,shape", [(fmt, shape) for fmt, shapes in BAD_BODIES.items() for shape in shapes]
)
def test_wrong_shape_body_is_malformed_and_fails_over(llm, fmt, shape):
    c, records = _pair(llm, fmt, f"{fmt}-bad", f"{fmt}-good", max_retries=0)
    llm.fault(f"{fmt}-bad", f"body:{shape}")
    out = c.complete("a", USER)
    assert out.alias == "b" and out.text == f"Hello from {fmt}-good"
    assert [(r["model"], r["error_kind"]) for r in records] == [("a", "malformed"), ("b", None)]


@pytest.mark.parametrize(
    "fmt,shape", [(fmt, shape) for fmt, shapes in BAD_EVENTS.items() for shape in shapes]
)
def test_wrong_shape_stream_event_is_malformed_and_fails_over(llm, fmt, shape):
    c, records = _pair(llm, fmt, f"{fmt}-bad", f"{fmt}-good", max_retries=0)
    llm.fault(f"{fmt}-bad", f"sse:{shape}")
    text = "".join(d.text for d in c.stream("a", USER))
    assert text == f"Hello from {fmt}-good"
    assert [(r["model"], r["error_kind"]) for r in records] == [("a", "malformed"), ("b", None)]


def test_wrong_shape_error_names_the_json_path_not_the_value(llm):
    c, records = one(llm, "openai", max_retries=0)
    llm.fault("openai-model", "body:message_is_text")
    with pytest.raises(AllModelsFailed):
        c.complete("m", USER)
    assert "choices[0].message: expected an object, got a string" in records[0]["error"]
    assert "'hi'" not in records[0]["error"]


def test_wrong_shape_after_partial_output_is_stream_broken_with_the_partial_text(llm):
    # A stream that already delivered text never silently switches models: it breaks, keeping what arrived.
    c, records = one(llm, "openai", max_retries=0)
    llm.fault("openai-model", "sse:partial_then_bad")
    got = []
    with pytest.raises(StreamBroken) as ei:
        for d in c.stream("m", USER):
            got.append(d.text)
    assert "".join(got) == "Hel" and ei.value.partial == "Hel"
    assert "chunk.choices[0].delta" in str(ei.value)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", ["drip:0.05", "driphead:0.05"])
def test_deadline_is_wall_clock_against_a_dripping_server(llm, fmt, stream, fault):
    # One byte every 0.05 s never trips a read timeout (30 s) nor the first-byte one (5 s); the call still ends
    # at its deadline (0.3 s: only the dripping model is ever waited on, so a small deadline is not flaky).
    c, records = _pair(llm, fmt, f"{fmt}-drip", f"{fmt}-good", timeout_s=30.0, first_byte_timeout_s=5.0,
                       deadline_s=0.3)
    llm.fault(f"{fmt}-drip", fault)
    t0 = time.monotonic()
    with pytest.raises(AllModelsFailed) as ei:
        list(c.stream("a", USER)) if stream else c.complete("a", USER)
    assert time.monotonic() - t0 < HANG_GUARD_S
    assert ei.value.kind == "timeout"
    assert [(r["model"], r["error_kind"]) for r in records] == [("a", "timeout")]
    assert "deadline_s=0.3s" in records[0]["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_attempt_timeout_cuts_a_dripping_server_and_fails_over(llm, stream):
    c, records = _pair(llm, "anthropic", "drip", "good", timeout_s=1.0, first_byte_timeout_s=5.0)
    llm.fault("drip", "drip:0.2")
    t0 = time.monotonic()
    out = c.complete("a", USER) if not stream else [d for d in c.stream("a", USER)][-1].completion
    assert time.monotonic() - t0 < HANG_GUARD_S
    assert out.alias == "b" and out.text == "Hello from good"
    assert [(r["model"], r["error_kind"]) for r in records] == [("a", "timeout"), ("b", None)]


def test_dripping_server_on_a_reused_connection_is_cut_too(llm):
    # The first call leaves a keep-alive connection; the second, dripping, reuses it.
    c, records = _pair(llm, "openai", "drip", "good", timeout_s=1.0, first_byte_timeout_s=5.0)
    assert c.complete("a", USER).alias == "a"
    llm.fault("drip", "driphead:0.5")  # ~70 header bytes: 35 s if the drip were not cut
    t0 = time.monotonic()
    assert c.complete("a", USER).alias == "b"
    assert time.monotonic() - t0 < HANG_GUARD_S
    assert [r["error_kind"] for r in records] == [None, "timeout", None]


@pytest.mark.parametrize("stream", [False, True])
def test_hanging_server_fails_over_after_first_byte_timeout_without_retry(llm, stream):
    c, records = _pair(llm, "gemini", "hung", "good", first_byte_timeout_s=0.5, timeout_s=30.0, max_retries=2)
    llm.fault("hung", "hang", "hang", "hang")
    t0 = time.monotonic()
    out = c.complete("a", USER) if not stream else [d for d in c.stream("a", USER)][-1].completion
    assert time.monotonic() - t0 < HANG_GUARD_S
    assert out.alias == "b"
    assert [(r["model"], r["error_kind"]) for r in records] == [("a", "timeout"), ("b", None)]
    assert llm.count("hung") == 1  # a timeout is not retried on the same model
    assert "first_byte_timeout_s=0.5s" in records[0]["error"]


def test_timeouts_are_settings_and_reject_nan_and_inf(tmp_path):
    from agent_router.errors import SettingsError
    from agent_router.settings import load

    p = tmp_path / "s.json"
    for field in ("connect_timeout_s", "first_byte_timeout_s", "timeout_s", "deadline_s", "cooldown_s"):
        for bad in ("NaN", "Infinity", "-1"):
            p.write_text(f'{{"providers": {{"{field}": {bad}}}}}')
            with pytest.raises(SettingsError) as ei:
                load(p)
            assert f"$.providers.{field}" in str(ei.value)


def test_rejected_key_is_set_aside_for_that_endpoint_only(monkeypatch):
    # Two endpoints read the same variable: one rejects the key, the other accepts it and keeps doing so.
    with FakeLLM(valid_keys={"other-key-0123456789"}) as strict, FakeLLM() as lenient:
        s = settings_for(
            {"a": model(strict.url, "openai", "s"), "b": model(lenient.url, "anthropic", "l")},
            fallbacks={"a": ["b"]},
        )
        c, records = client_for(s)
        assert c.complete("a", USER).alias == "b"
        assert c.complete("b", USER).alias == "b"  # not set aside at b's endpoint
        assert [r["error_kind"] for r in records] == ["auth", None, None]
        with pytest.raises(AllModelsFailed) as ei:
            c.complete("a", USER, fallbacks=[])
        msg = str(ei.value)
        assert ei.value.kind == "auth" and "TEST_KEY was rejected by" in msg and strict.url in msg
        assert "no API key set" not in msg and GOOD not in msg
        assert strict.count("s") == 1  # set aside: not sent again to the endpoint that refused it


def test_rejected_key_error_says_rejected_and_names_the_variable(llm):
    c, _ = client_for(settings_for({"m": model(llm.url, "openai", "x")}), env={"TEST_KEY": BAD_KEY})
    with pytest.raises(AllModelsFailed) as ei:
        c.complete("m", USER)
    msg = str(ei.value)
    assert "key in TEST_KEY rejected by" in msg and BAD_KEY not in msg


@pytest.mark.parametrize("bad", ["\u201ctest-key-GOOD\u201d", "test-key\u00a0GOOD", "test key", "test\tkey"])
def test_unusable_key_is_a_clear_error_naming_the_variable(llm, bad):
    c, records = client_for(settings_for({"m": model(llm.url, "openai", "x")}), env={"TEST_KEY": bad})
    with pytest.raises(AllModelsFailed) as ei:
        c.complete("m", USER)
    msg = str(ei.value)
    assert "TEST_KEY holds a" in msg and "position" in msg
    assert bad not in msg and bad.strip("\u201c\u201d") not in msg
    assert llm.count("x") == 0  # never sent


def test_unusable_key_falls_back_to_the_next_key(llm):
    s = settings_for({"m": model(llm.url, "openai", "x", api_key_env=["PASTED", "OK_KEY"])})
    c, _ = client_for(s, env={"PASTED": GOOD + "\u201d", "OK_KEY": GOOD})
    assert c.complete("m", USER).text == "Hello from x"


@pytest.mark.parametrize("fault", ["body:usage_is_text", "hang", "drip:0.2"])
def test_cli_ask_surfaces_a_hostile_server_as_one_line(llm, tmp_path, monkeypatch, fault):
    monkeypatch.setenv("TEST_KEY", GOOD)
    path = write_settings(
        tmp_path, llm, providers={**FAST, "first_byte_timeout_s": 0.5, "timeout_s": 1.0, "max_retries": 0}
    )
    kind = "malformed" if fault.startswith("body") else "timeout"
    llm.fault("cli-util", fault)
    r = run_cli(["ask", "hi", "--settings", path, "--model", "u"])
    assert r.exit_code == 0, r.output  # the chain's next model answers, and the failover is one line
    assert f"failover: u {kind} -> p" in r.stdout
    llm.fault("cli-util", fault)
    llm.fault("cli-prem", fault)  # c has no key: every model fails
    r = run_cli(["ask", "hi", "--settings", path, "--model", "u"])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and r.output.count("\n") == 1 and "Traceback" not in r.output
    assert f"u: {kind}; p: {kind}" in r.output


def test_cli_ask_with_a_pasted_curly_quote_in_the_key(llm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY", GOOD + "\u201d")
    r = run_cli(["ask", "hi", "--settings", write_settings(tmp_path, llm), "--model", "u"])
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert "TEST_KEY holds a non-ASCII character" in r.output and GOOD not in r.output


# --- secrets --------------------------------------------------------------------------------------------
def test_api_keys_never_appear_in_logs_errors_or_records(llm, caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for fmt in FORMATS:
        s = settings_for(
            {
                "a": model(llm.url, fmt, f"{fmt}-sec", api_key_env=["BAD_KEY", "OK_KEY"]),
                "b": model(llm.url, fmt, f"{fmt}-sec2", api_key_env="BAD_KEY"),
            },
            fallbacks={"a": ["b"]},
            max_retries=0,
        )
        c, records = client_for(s, env={"BAD_KEY": BAD_KEY, "OK_KEY": GOOD})
        llm.fault(f"{fmt}-sec", "500", "reset", "malformed")
        for _ in range(3):
            try:
                c.complete("a", USER)
            except ProviderError as e:
                texts += [str(e), repr(e), json.dumps(e.attempts)]
        for call in (c.complete, lambda *a, c=c: list(c.stream(*a))):
            with pytest.raises(ProviderError) as ei:
                call("b", USER)  # only the bad key: the server's refusal echoes it back
            texts += [str(ei.value), repr(ei.value), json.dumps(ei.value.attempts)]
        texts += [json.dumps(records), repr(c.keys.rotation("g", ["BAD_KEY", "OK_KEY"]))]
    stt = Settings.model_validate(
        {
            "providers": {
                **FAST,
                "transcription": [
                    {"name": "s", "base_url": llm.url + "/v1", "api_key_env": "BAD_KEY", "model": "w"}
                ],
            }
        }
    )
    stt_records: list[dict] = []
    with pytest.raises(ProviderError) as ei:
        TranscriptionPool(stt, env={"BAD_KEY": BAD_KEY}, on_attempt=stt_records.append).transcribe(b"abc")
    texts += [str(ei.value), repr(ei.value), json.dumps(stt_records), caplog.text]
    blob = "\n".join(texts)
    # The refusals (which quoted the key) are all there, with the key replaced.
    assert blob.count("auth") >= 9 and "Incorrect API key provided: [redacted]" in blob
    assert (
        "invalid x-api-key [redacted]" in blob
        and "API key not valid. Please pass a valid API key. [redacted]" in blob
    )
    assert BAD_KEY not in blob and GOOD not in blob


# --- transcription --------------------------------------------------------------------------------------
def stt_settings(url: str, **over: Any) -> Settings:
    # Size limits scaled down 1000x (25 MB -> 25 kB) so the tests upload little.
    provs = [
        {
            "name": "paid",
            "base_url": url + "/v1",
            "api_key_env": "K_PAID",
            "model": "whisper-1",
            "price_per_minute": 0.006,
            "max_file_mb": 0.025,
        },
        {
            "name": "free",
            "base_url": url + "/openai/v1",
            "api_key_env": "K_FREE",
            "model": "whisper-large-v3",
            "price_per_minute": 0.0,
            "max_file_mb": 0.025,
        },
        {
            "name": "big",
            "base_url": url + "/big/v1",
            "api_key_env": "K_BIG",
            "model": "whisper-big",
            "price_per_minute": 0.0015,
            "max_file_mb": 0.1,
        },
        {
            "name": "nokey",
            "base_url": url + "/nk/v1",
            "api_key_env": "K_NONE",
            "model": "whisper-nk",
            "price_per_minute": 0.0,
        },
    ]
    return Settings.model_validate({"providers": {**FAST, **over, "transcription": provs}})


STT_ENV = {"K_PAID": GOOD, "K_FREE": GOOD, "K_BIG": SECOND}


def test_transcription_prefers_free_then_rotates(llm):
    records: list[dict] = []
    pool = TranscriptionPool(stt_settings(llm.url), env=STT_ENV, on_attempt=records.append)
    out = pool.transcribe(b"RIFF....WAVEfmt ", filename="a.wav", language="en")
    assert out.provider == "free" and out.text == "transcribed by whisper-large-v3"
    assert out.duration_s == 30.0 and out.cost_usd == 0.0
    req = llm.requests[-1]
    assert req["body"]["file"] == b"RIFF....WAVEfmt " and req["body"]["filename"] == "a.wav"
    assert req["body"]["language"] == "en" and req["body"]["model"] == "whisper-large-v3"
    # The order after the free provider rotates between the paid ones.
    orders = [[p.name for p in pool.plan(10)[0]] for _ in range(2)]
    assert orders[0][0] == orders[1][0] == "free" and orders[0][1:] == orders[1][1:][::-1]
    assert "nokey: no key" in pool.plan(10)[1][0]


def test_transcription_fails_over_and_respects_size_limits(llm):
    records: list[dict] = []
    pool = TranscriptionPool(stt_settings(llm.url), env=STT_ENV, on_attempt=records.append)
    llm.fault("whisper-large-v3", "500")
    out = pool.transcribe(b"x" * 1000, filename="b.mp3")
    assert out.provider in ("paid", "big") and records[0]["error_kind"] == "server"
    assert records[1]["fallback_of"] == records[0]["id"]
    big = b"x" * 30_000  # 30 kB: only the 100 kB provider takes it
    out = pool.transcribe(big, filename="c.mp3")
    assert out.provider == "big" and out.cost_usd == pytest.approx(0.5 * 0.0015)


def test_transcription_skips_cooling_provider_and_reports_all_failures(llm):
    pool = TranscriptionPool(stt_settings(llm.url, failure_threshold=1, cooldown_s=60), env=STT_ENV)
    llm.fault("whisper-large-v3", "500")
    pool.transcribe(b"abc", filename="a.wav")
    assert "free: cooling down" in pool.plan(3)[1]
    with pytest.raises(AllModelsFailed) as ei:
        pool.transcribe(b"x" * 200_000, filename="huge.wav")
    assert "exceeds its 0.1 MB limit" in str(ei.value)


def test_transcription_wrong_key_is_set_aside(llm):
    s = Settings.model_validate(
        {
            "providers": {
                **FAST,
                "transcription": [
                    {
                        "name": "only",
                        "base_url": llm.url + "/v1",
                        "api_key_env": ["K_BAD", "K_OK"],
                        "model": "w",
                    }
                ],
            }
        }
    )
    records: list[dict] = []
    pool = TranscriptionPool(s, env={"K_BAD": BAD_KEY, "K_OK": GOOD}, on_attempt=records.append)
    assert pool.transcribe(b"abc", filename="a.ogg").text == "transcribed by w"
    assert pool.transcribe(b"abc", filename="a.ogg").text == "transcribed by w"
    assert [r["error_kind"] for r in records].count("auth") == 1
    assert BAD_KEY not in json.dumps(records)


def test_transcription_key_must_name_an_env_var():
    with pytest.raises(Exception, match="must name an environment variable"):
        Settings.model_validate(
            {
                "providers": {
                    "transcription": [
                        {"name": "g", "base_url": "http://127.0.0.1:1/v1", "api_key_env": "gsk_abcdefabcdef"}
                    ]
                }
            }
        )


def test_error_kinds_classification_table():
    from agent_router.providers.classify import classify, parse_duration, retry_after

    assert classify(400, "This model's maximum context length is 8192 tokens") == t.CONTEXT_LENGTH
    assert classify(400, "INVALID_ARGUMENT: API key not valid") == t.AUTH
    assert classify(529, "overloaded_error") == t.SERVER
    assert parse_duration("6m0s") == 360 and parse_duration("20ms") == pytest.approx(0.02)
    assert retry_after({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}) == 1.5
    assert retry_after({}, b'{"error": {"details": [{"retryDelay": "7s"}]}}') == 7.0
    assert retry_after({}, b"", "insufficient_quota: You exceeded your current quota") == float("inf")
    from agent_router.providers.classify import learned_limits

    h = {"x-ratelimit-limit-requests": "14400", "x-ratelimit-limit-tokens": "6000"}
    assert learned_limits(h, "openai") == {"rpm": 14400, "input_tpm": 6000}
    assert learned_limits(h, "groq") == {"input_tpm": 6000}  # Groq's request limit is per day
    assert learned_limits({"anthropic-ratelimit-output-tokens-limit": "8000"}) == {"output_tpm": 8000}


# --- CLI ------------------------------------------------------------------------------------------------
def write_settings(tmp_path, llm: FakeLLM, **extra: Any) -> str:
    models = {
        "u": model(llm.url, "openai", "cli-util", price={"input": 1.0, "output": 2.0}),
        "c": model(llm.url, "anthropic", "cli-chat", api_key_env="CLI_UNSET_KEY"),
        "p": model(llm.url, "gemini", "cli-prem", price={"input": 3.0, "output": 6.0}),
    }
    data = {
        "models": models,
        "tiers": {"utility": ["u"], "chat": ["c"], "premium": ["p"]},
        "providers": FAST,
        "ledger": {"path": str(tmp_path / "ledger.db")},
        **extra,
    }
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(data))
    return str(path)


def run_cli(args: list[str]):
    from click.testing import CliRunner

    from agent_router.cli import cli

    return CliRunner().invoke(cli, args)


def test_cli_health_reports_no_key_and_failures(llm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY", GOOD)
    monkeypatch.delenv("CLI_UNSET_KEY", raising=False)
    path = write_settings(tmp_path, llm)
    llm.fault("cli-prem", "500")
    r = run_cli(["health", "--settings", path, "--json"])
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    status = {m["model"]: m["status"] for m in out["models"]}
    assert status == {"u": "ok", "c": "no key", "p": "server"}
    assert out["tiers_without_healthy_model"] == ["chat", "premium"]
    assert llm.count("cli-chat") == 0  # no key: not pinged
    assert GOOD not in r.output


def test_cli_health_reports_bad_config_per_model(llm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY", GOOD)
    path = write_settings(tmp_path, llm)
    data = json.loads(open(path).read())
    data["models"]["c"] = {"provider": "openai_compatible", "name": "somewhere"}  # no base_url
    open(path, "w").write(json.dumps(data))
    r = run_cli(["health", "--settings", path, "--json"])
    assert r.exit_code == 1
    bad = {m["model"]: m for m in json.loads(r.stdout)["models"]}["c"]
    assert bad["status"] == "bad config" and "models.c.base_url" in bad["error"]


def test_settings_errors_name_the_providers_path(tmp_path):
    from agent_router.errors import SettingsError
    from agent_router.settings import load

    p = tmp_path / "s.json"
    p.write_text(json.dumps({"providers": {"timeout_s": -1, "transcription": [{"name": "x"}]}}))
    with pytest.raises(SettingsError) as ei:
        load(p)
    msg = str(ei.value)
    assert "$.providers.timeout_s" in msg and "$.providers.transcription[0].base_url" in msg


def test_cli_health_all_healthy_exits_zero(llm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY", GOOD)
    monkeypatch.setenv("CLI_UNSET_KEY", SECOND)
    r = run_cli(["health", "--settings", write_settings(tmp_path, llm)])
    assert r.exit_code == 0, r.output
    assert r.output.count(" ok ") == 3 and " ms" in r.output


@pytest.mark.parametrize("stream", [False, True])
def test_cli_ask_prints_answer_decision_and_cost(llm, tmp_path, monkeypatch, stream):
    monkeypatch.setenv("TEST_KEY", GOOD)
    path = write_settings(tmp_path, llm)
    r = run_cli(["ask", "hi", "--settings", path, "--tier", "utility"] + (["--stream"] if stream else []))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "Hello from cli-util"
    assert "decision: utility: u" in r.stdout
    # 21 input tokens (5 cached) at $1/M and 7 output at $2/M -> $0.000035
    assert "cost $0.000035 (settings)" in r.stdout
    assert llm.requests[-1]["stream"] is stream


def test_cli_ask_fails_over_and_says_so(llm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY", GOOD)
    path = write_settings(tmp_path, llm, routing={"fallbacks": {"u": ["p"]}})
    llm.fault("cli-util", "500", "500")
    r = run_cli(["ask", "hi", "--settings", path, "--model", "u", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["model"] == "p" and out["answer"] == "Hello from cli-prem"
    assert [a["error_kind"] for a in out["attempts"]] == ["server", "server", None]
    assert out["cost_usd"] == pytest.approx((16 * 3 + 5 * 3 + 7 * 6) / 1e6)
    # Every attempt is a ledger row; each failover points at the attempt it replaced.
    import sqlite3

    rows = sqlite3.connect(tmp_path / "ledger.db").execute(
        "select id, model, outcome, fallback_of, cost_usd from calls order by id").fetchall()
    assert [(r[1], r[2]) for r in rows] == [("cli-util", "server"), ("cli-util", "server"), ("cli-prem", "ok")]
    assert rows[0][3] is None and rows[1][3] == rows[0][0] and rows[2][3] == rows[1][0]
    assert rows[2][4] == pytest.approx(out["cost_usd"])


def test_cli_ask_all_failed_is_one_line_error(llm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY", BAD_KEY)
    r = run_cli(["ask", "hi", "--settings", write_settings(tmp_path, llm), "--model", "u"])
    assert r.exit_code == 2
    assert r.output.startswith("error: ") and "auth" in r.output and BAD_KEY not in r.output


# --- asyncio --------------------------------------------------------------------------------------------
def test_async_client_runs_calls_concurrently_and_streams(llm):
    import asyncio

    from agent_router.providers import AsyncProviderClient

    s = settings_for({"m": model(llm.url, "anthropic", "async-model")}, timeout_s=2.0)
    records: list[dict] = []

    async def main():
        async with AsyncProviderClient(settings=s, env={"TEST_KEY": GOOD}, on_attempt=records.append) as ac:
            llm.fault("async-model", *["delay:0.4"] * 5)
            t0 = time.monotonic()
            outs = await asyncio.gather(*(ac.complete("m", USER) for _ in range(5)))
            elapsed = time.monotonic() - t0
            assert all(o.text == "Hello from async-model" for o in outs)
            assert elapsed < 1.5  # five 0.4 s calls overlapped: the event loop was never blocked
            text = "".join([d.text async for d in ac.stream("m", USER)])
            assert text == "Hello from async-model"
            llm.fault("async-model", "cut")
            got = []
            with pytest.raises(StreamBroken):
                async for d in ac.stream("m", USER):
                    got.append(d.text)
            assert got == ["Hello"]

    asyncio.run(main())
    assert [r["outcome"] for r in records].count("ok") == 6 and records[-1]["outcome"] == "stream_broken"
