"""The attempt rules (providers/attempts.Plan) are one: the sync ProviderClient and the AsyncProviderClient take
the same path through the same scripted failures of a real server on 127.0.0.1 (see providers_fixtures.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent_router.providers import AllModelsFailed, AsyncProviderClient, ProviderClient, StreamBroken
from agent_router.settings import Settings

from .providers_fixtures import GOOD_KEYS, FakeLLM

PREFIX = {"openai": "/v1", "anthropic": "/v1", "gemini": "/v1beta"}
USER = [{"role": "user", "content": "Say hello"}]
ENV = {"TEST_KEY": sorted(GOOD_KEYS)[0]}


def settings(llm: FakeLLM) -> Settings:
    def m(fmt: str, name: str, window: int) -> dict[str, Any]:
        return {"provider": fmt, "name": name, "base_url": llm.url + PREFIX[fmt], "api_key_env": "TEST_KEY",
                "context_window": window}

    return Settings.model_validate({
        "models": {"a": m("openai", "p-ctx", 8192), "same": m("openai", "p-same", 8192),
                   "b": m("anthropic", "p-flaky", 200000), "c": m("gemini", "p-ok", 200000)},
        "tiers": {"utility": ["a"], "chat": ["b"], "premium": ["c"]},
        "routing": {"fallbacks": {"a": ["same", "b", "c"]}},
        "providers": {"timeout_s": 2.0, "connect_timeout_s": 1.0, "backoff_base_s": 0.01, "backoff_max_s": 0.02,
                      "max_retry_wait_s": 1.0, "max_retries": 1},
    })


def script(llm: FakeLLM) -> None:
    llm.fault("p-ctx", "context")  # fail over at once, and skip the next model with no larger window
    llm.fault("p-flaky", "500", "429:30")  # retried once after a backoff; then a wait beyond the budget
    llm.requests.clear()


def run_sync(llm: FakeLLM, stream: bool, faults: bool = True) -> tuple[Any, list[dict], list[str]]:
    if faults:
        script(llm)
    records: list[dict] = []
    with ProviderClient(settings(llm), env=ENV, on_attempt=records.append) as c:
        try:
            out: Any = "".join(d.text for d in c.stream("a", USER)) if stream else c.complete("a", USER).text
        except (AllModelsFailed, StreamBroken) as e:
            out = (type(e).__name__, e.kind)
    return out, records, [r["model"] for r in llm.requests]


def run_async(llm: FakeLLM, stream: bool, faults: bool = True) -> tuple[Any, list[dict], list[str]]:
    if faults:
        script(llm)
    records: list[dict] = []

    async def main() -> Any:
        async with AsyncProviderClient(settings=settings(llm), env=ENV, on_attempt=records.append) as c:
            try:
                if stream:
                    return "".join([d.text async for d in c.stream("a", USER)])
                return (await c.complete("a", USER)).text
            except (AllModelsFailed, StreamBroken) as e:
                return (type(e).__name__, e.kind)

    return asyncio.run(main()), records, [r["model"] for r in llm.requests]


def path(records: list[dict]) -> list[tuple]:
    return [(r["model"], r["outcome"], r["error_kind"], r["attempt"]) for r in records]


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_sync_and_async_clients_fail_over_and_retry_the_same_way(llm, stream):
    sync_out, sync_recs, sync_reqs = run_sync(llm, stream)
    async_out, async_recs, async_reqs = run_async(llm, stream)
    assert sync_out == async_out == "Hello from p-ok"
    assert path(sync_recs) == path(async_recs) == [
        ("a", "error", "context_length", 1),
        ("b", "error", "server", 2),
        ("b", "error", "rate_limit", 3),
        ("c", "ok", None, 4),
    ]
    assert sync_reqs == async_reqs == ["p-ctx", "p-flaky", "p-flaky", "p-ok"]  # "same" was never asked
    for recs in (sync_recs, async_recs):
        assert [r["fallback_of"] for r in recs[1:]] == [r["id"] for r in recs[:-1]]


def test_sync_and_async_clients_fail_the_same_way_when_no_model_answers(llm):
    def script_all(llm: FakeLLM) -> None:
        script(llm)
        llm.fault("p-ok", "500", "500")

    script_all(llm)
    sync = run_sync(llm, False, faults=False)
    script_all(llm)
    asyn = run_async(llm, False, faults=False)
    assert sync[0] == asyn[0] == ("AllModelsFailed", "server")
    assert path(sync[1]) == path(asyn[1]) and [r[0] for r in path(sync[1])] == ["a", "b", "b", "c", "c"]
    assert sync[2] == asyn[2]


def test_sync_and_async_streams_never_fail_over_after_partial_output(llm):
    for run in (run_sync, run_async):
        llm.requests.clear()
        llm.fault("p-ctx", "cut")  # the stream breaks after its first delta
        out, records, reqs = run(llm, True, faults=False)
        assert out == ("StreamBroken", "stream_broken")
        assert path(records) == [("a", "stream_broken", "stream_broken", 1)] and reqs == ["p-ctx"]


def test_sync_and_async_streams_record_a_stream_their_caller_stops_reading(llm):
    """The first delta is paid for: a caller that stops there still leaves one `cancelled` record."""

    def sync() -> tuple[str, list[dict]]:
        records: list[dict] = []
        with ProviderClient(settings(llm), env=ENV, on_attempt=records.append) as c:
            gen = c.stream("c", USER)
            first = next(gen).text
            gen.close()
        return first, records

    def asyn() -> tuple[str, list[dict]]:
        records: list[dict] = []

        async def main() -> str:
            async with AsyncProviderClient(settings=settings(llm), env=ENV, on_attempt=records.append) as c:
                gen = c.stream("c", USER)
                first = (await anext(gen)).text
                await gen.aclose()
                return first

        return asyncio.run(main()), records

    for run in (sync, asyn):
        first, records = run()
        assert first == "Hello"
        assert path(records) == [("c", "cancelled", "cancelled", 1)]
        assert records[0]["input_tokens"] > 0
