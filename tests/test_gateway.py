"""`agent-router serve` driven as a real subprocess with the official openai and anthropic SDKs, against a local
fake upstream: plain, streamed, tools, routed `auto` on different tiers, the Anthropic dialect, failover,
a client that disconnects mid-stream, size limits; ledger rows checked for each."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from .gateway_fixtures import (
    HARD,
    UP_KEY,
    Gateway,
    SlowStream,
    anthropic_client,
    http,
    http_call,
    openai_client,
    rows,
    settings_for,
)
from .providers_fixtures import USAGE

# openai and anthropic (~1.5 s of CPU to import) are imported by the tests that use them, so that an xdist
# worker which only collects this file does not pay for them.

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def gw(gw_upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gw")
    g = Gateway(settings_for(gw_upstream.url, tmp), tmp)
    yield g
    g.stop()


@pytest.fixture
def oai(gw):
    return openai_client(gw.url)


def test_plain_request_names_tier_model_and_cost_and_is_recorded(gw, oai):
    raw = oai.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Conversation-Id": "conv-plain"})
    c = raw.parse()
    assert c.choices[0].message.content == "Hello from small-model"
    assert c.usage.prompt_tokens == USAGE["input"] and c.usage.completion_tokens == USAGE["output"]
    assert raw.headers["x-agent-router-tier"] == "utility" and raw.headers["x-agent-router-model"] == "u"
    cost = float(raw.headers["x-agent-router-cost-usd"])
    assert cost == pytest.approx(((USAGE["input"] - USAGE["cached"]) * 0.1 + USAGE["cached"] * 0.1
                                  + USAGE["output"] * 0.4) / 1e6, rel=0.5)
    (row,) = rows(gw.db, 1, where="conversation_id = 'conv-plain'")
    assert row["tier"] == "utility" and row["requested_model"] == "u" and row["outcome"] == "ok"
    assert row["input_tokens"] == USAGE["input"] and row["output_tokens"] == USAGE["output"]
    assert row["agent_id"] == "local" and json.loads(row["reasons"])
    assert row["cost_usd"] == pytest.approx(cost)


def test_auto_routes_easy_and_hard_prompts_to_different_tiers(gw, oai):
    easy = oai.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "thanks!"}], extra_headers={"X-Conversation-Id": "e1"})
    hard = oai.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": HARD}], extra_headers={"X-Conversation-Id": "h1"})
    assert easy.headers["x-agent-router-tier"] == "utility"
    assert hard.headers["x-agent-router-tier"] == "premium"
    # the premium model speaks Anthropic's wire format upstream; the client still sees OpenAI's
    assert hard.parse().choices[0].message.content == "Hello from big-model"
    assert rows(gw.db, 1, where="conversation_id = 'h1'")[0]["tier"] == "premium"
    assert rows(gw.db, 1, where="conversation_id = 'e1'")[0]["tier"] == "utility"


def test_stream_with_usage_chunk(gw, oai):
    chunks = list(oai.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}, extra_headers={"X-Conversation-Id": "conv-stream"}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hello from mid-model"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == USAGE["input"]
    (row,) = rows(gw.db, 1, where="conversation_id = 'conv-stream'")
    assert row["tier"] == "chat" and row["output_tokens"] == USAGE["output"] and row["outcome"] == "ok"


@pytest.mark.parametrize("stream", [False, True])
def test_tools_and_tool_results_pass_through(gw, oai, stream):
    conv = f"conv-tools-{stream}"
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        chunks = list(oai.chat.completions.create(model="utility", messages=msgs, tools=TOOLS, stream=True,
                                                  extra_headers={"X-Conversation-Id": conv}))
        calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
        finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        assert finish == ["tool_calls"]
        call = calls[0]
    else:
        c = oai.chat.completions.create(model="utility", messages=msgs, tools=TOOLS,
                                        extra_headers={"X-Conversation-Id": conv})
        assert c.choices[0].finish_reason == "tool_calls"
        call = c.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    fn = {"name": "get_weather", "arguments": call.function.arguments}
    tc = {"id": call.id, "type": "function", "function": fn}
    msgs += [{"role": "assistant", "content": None, "tool_calls": [tc]},
             {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"}]
    again = oai.chat.completions.create(model="utility", messages=msgs, tools=TOOLS,
                                        extra_headers={"X-Conversation-Id": conv})
    assert again.choices[0].message.content == "Hello from small-model"
    assert len(rows(gw.db, 2, where=f"conversation_id = '{conv}'")) == 2


def test_images_and_json_mode_reach_the_upstream(gw, oai, gw_upstream):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    oai.chat.completions.create(
        model="c", response_format={"type": "json_object"},
        messages=[{"role": "user", "content": [{"type": "text", "text": "describe as JSON"}, image]}])
    sent = [r for r in gw_upstream.requests if r["model"] == "mid-model"][-1]["body"]
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"][-1]["content"][1] == image


def test_anthropic_sdk_plain_and_streamed(gw):
    ac = anthropic_client(gw.url)
    m = ac.messages.create(model="utility", max_tokens=100, system="be brief",
                           messages=[{"role": "user", "content": "hello"}],
                           extra_headers={"X-Conversation-Id": "anth-1"})
    assert m.content[0].text == "Hello from small-model" and m.stop_reason == "end_turn"
    assert m.usage.output_tokens == USAGE["output"]
    with ac.messages.stream(model="premium", max_tokens=100, messages=[{"role": "user", "content": "hello"}],
                            extra_headers={"X-Conversation-Id": "anth-2"}) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello from big-model" and final.usage.output_tokens == USAGE["output"]
    tool = ac.messages.create(
        model="chat", max_tokens=100, messages=[{"role": "user", "content": "weather?"}],
        tools=[{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}])
    assert tool.stop_reason == "tool_use" and tool.content[-1].input == {"city": "Paris"}
    assert rows(gw.db, 1, where="conversation_id = 'anth-1'")[0]["tier"] == "utility"
    assert rows(gw.db, 1, where="conversation_id = 'anth-2'")[0]["tier"] == "premium"


def test_upstream_failure_fails_over_and_both_attempts_are_recorded(gw, oai, gw_upstream):
    gw_upstream.fault("small-model", "500")
    raw = oai.chat.completions.with_raw_response.create(
        model="utility", messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Conversation-Id": "fo"})
    assert raw.parse().choices[0].message.content == "Hello from mid-model"
    assert raw.headers["x-agent-router-model"] == "c"
    got = rows(gw.db, 2, where="conversation_id = 'fo'")
    assert [r["outcome"] for r in got] == ["server", "ok"]
    assert got[1]["fallback_of"] == got[0]["id"] and got[1]["requested_model"] == "u"
    assert UP_KEY not in json.dumps(got)


def test_every_model_failing_is_one_openai_error(gw, oai, gw_upstream):
    import openai

    gw_upstream.fault("small-model", "500")
    gw_upstream.fault("mid-model", "500")
    with pytest.raises(openai.APIStatusError) as e:
        oai.chat.completions.create(model="utility", messages=[{"role": "user", "content": "x"}],
                                    extra_headers={"X-Conversation-Id": "allfail"})
    assert e.value.status_code == 502 and e.value.body["code"] == "server"
    assert "every model failed" in e.value.body["message"]
    got = rows(gw.db, 2, where="conversation_id = 'allfail'")
    assert [(r["requested_model"], r["outcome"]) for r in got] == [("u", "server"), ("u", "server")]
    assert [r["model"] for r in got] == ["small-model", "mid-model"]


def test_unknown_model_bad_json_and_oversized_body(gw):
    with http(base_url=gw.url) as h:
        r = h.post("/v1/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 404 and r.json()["error"]["param"] == "model"
        r = h.post("/v1/chat/completions", content=b"{nope")
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
        big = b'{"messages": [{"role": "user", "content": "' + b"a" * (17 * 2**20) + b'"}]}'
        r = h.post("/v1/chat/completions", content=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        r = h.post("/v1/messages", json={"model": "auto", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"  # Anthropic's shape


def test_models_list(gw, oai):
    ids = [m.id for m in oai.models.list()]
    assert ids[:4] == ["auto", "utility", "chat", "premium"] and {"u", "c", "p"} <= set(ids)


def test_client_disconnect_mid_stream_cancels_upstream_and_records_partial(tmp_path):
    slow = SlowStream()
    g = Gateway(settings_for(slow.url, tmp_path), tmp_path)
    try:
        body = json.dumps({"model": "utility", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        port = int(g.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       f"X-Conversation-Id: gone\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
            got = b""
            while b"Hello" not in got:
                got += s.recv(4096)
        t0 = time.monotonic()
        assert slow.closed.wait(10), "the upstream request was not closed when the client went away"
        assert time.monotonic() - t0 < 10
        (row,) = rows(g.db, 1, where="conversation_id = 'gone'")
        assert row["outcome"] == "cancelled" and row["output_tokens"] >= 1 and row["input_tokens"] > 0
    finally:
        g.stop()
        slow.stop()


def test_non_loopback_bind_without_keys_is_refused(tmp_path, gw_upstream):
    p = tmp_path / "s.json"
    p.write_text(json.dumps(settings_for(gw_upstream.url, tmp_path)))
    r = subprocess.run([sys.executable, "-m", "agent_router", "serve", "--settings", str(p), "--host", "0.0.0.0",
                        "--port", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "refusing to serve a non-loopback address without keys" in r.stderr and "Traceback" not in r.stderr


def test_two_workers_share_one_ledger_and_stop_cleanly(tmp_path, gw_upstream):
    import concurrent.futures as cf


    g = Gateway(settings_for(gw_upstream.url, tmp_path), tmp_path, args=("--workers", "2"))
    try:
        c = openai_client(g.url, "x")

        def ask(i: int) -> str:
            return c.chat.completions.create(model="utility", messages=[{"role": "user", "content": f"hi {i}"}],
                                             extra_headers={"X-Conversation-Id": f"w{i}"}).choices[0].message.content

        with cf.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(ask, range(24))) == {"Hello from small-model"}
    finally:
        g.stop()
    assert g.proc.returncode == 0
    got = rows(g.db, 24, timeout=2, where="conversation_id LIKE 'w%'")
    assert len(got) == 24 and {r["outcome"] for r in got} == {"ok"}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_lone_surrogates_in_a_request_are_routed_answered_and_recorded(gw, stream):
    """A tool output cut between the halves of an emoji arrives as a lone surrogate escape (valid JSON): the
    request is routed, answered and recorded like any other, not a 500 or a lost row."""
    conv = f"surrogate-{stream}"
    body = ('{"model": "auto", "stream": %s, "messages": [{"role": "user", "content": "Summarize this log: ok '
            '\\ud83d then \\udc00 done"}, {"role": "assistant", "content": [{"type": "text", "text": "x\\ud800"}]},'
            ' {"role": "user", "content": "and now? \\udfff"}]}' % ("true" if stream else "false"))
    r = http_call("POST", f"{gw.url}/v1/chat/completions", content=body.encode(),
                   headers={"Content-Type": "application/json", "X-Conversation-Id": conv}, timeout=30)
    assert r.status_code == 200, r.text
    assert ("data: [DONE]" in r.text if stream else "Hello from" in r.text) and r.headers["x-agent-router-tier"]
    (row,) = rows(gw.db, 1, where=f"conversation_id = '{conv}'")
    assert row["outcome"] == "ok" and row["input_tokens"] > 0


def test_ledger_writes_calls_finished_during_a_write_in_one_later_window_and_all_at_stop(tmp_path, gw_upstream):
    """The ledger thread writes finished calls by gathering windows: calls that finish while a batch is being
    written wait for the next window and share its transaction with those finishing just after (they are not
    written a few at a time as the thread frees up), and a clean stop writes whatever still waits."""
    import asyncio
    import threading

    from agent_router.gateway.app import ANONYMOUS
    from agent_router.gateway.core import CallLog
    from agent_router.gateway.core import Gateway as Core
    from agent_router.settings import Settings

    gw = Core(Settings.model_validate(settings_for(gw_upstream.url, tmp_path)), env={"GW_UP_KEY": UP_KEY})
    w = gw.writer
    batches: list[int] = []
    hold, written = threading.Event(), threading.Event()
    write = w._write

    def held_write(batch):  # the first write of each round waits until the test lets it go
        batches.append(len(batch))
        if not hold.is_set():
            hold.wait(10)
        write(batch)
        written.set()

    w._write = held_write  # type: ignore[method-assign]

    def finished(i):
        msgs = [{"role": "user", "content": f"Say hello to number {i}."}]
        p = gw.prepare(msgs, None, f"conv-{i}", ANONYMOUS, [])
        c = CallLog(gw, p)
        c({"id": "a", "model": p.decision.model, "model_name": p.decision.model_name,
           "provider": p.decision.provider, "input_tokens": 9, "output_tokens": 3, "token_source": "reported",
           "latency_ms": 1.0, "outcome": "ok"})
        return c

    async def until(event):
        while not event.is_set():
            await asyncio.sleep(0.002)

    async def main():
        w.put(finished(0))  # opens a window; when it closes, the batch's write is held
        while not batches:
            await asyncio.sleep(0.002)
        w.put(finished(1))
        w.put(finished(2))  # both finish during the write
        written.clear()
        hold.set()
        await until(written)
        for i in (3, 4, 5):  # finish just after it
            w.put(finished(i))
        while len(batches) < 2:
            await asyncio.sleep(0.002)
        await asyncio.sleep(w.WINDOW_S + 0.1)
        assert batches == [1, 5]
        # A stop while calls wait behind a held write: every one is written before the ledger closes.
        hold.clear()
        w.put(finished(6))
        while len(batches) < 3:
            await asyncio.sleep(0.002)
        w.put(finished(7))
        threading.Timer(0.1, hold.set).start()
        await gw.aclose()

    asyncio.run(main())
    import sqlite3

    with sqlite3.connect(tmp_path / "ledger.db") as db:
        convs = sorted(r[0] for r in db.execute("SELECT conversation_id FROM calls"))
    assert convs == [f"conv-{i}" for i in range(8)]
