"""Usage normalization per provider family, and pricing of normalized usage at list price."""

from __future__ import annotations

import genai_prices
import pytest

from agent_router.catalog import Catalog
from agent_router.settings import Settings
from agent_router.usage import StreamUsage, Usage, UsageError, from_openai, normalize

from .ledger_fixtures import ANTHROPIC_RESPONSE, GEMINI_RESPONSE, OPENAI_RESPONSE, list_cost


def test_openai_cached_tokens_are_inside_prompt_tokens():
    u = normalize(OPENAI_RESPONSE, "openai")
    assert u == Usage(
        input=12000, output=900, cached_input=8000, cache_write=0, reasoning=300, source="provider"
    )
    assert u.fresh_input == 4000


def test_anthropic_cache_tokens_are_added_to_input_tokens():
    u = normalize(ANTHROPIC_RESPONSE, "anthropic")
    assert (u.input, u.cached_input, u.cache_write, u.output) == (25500, 20000, 4000, 700)
    assert u.fresh_input == 1500


def test_gemini_output_adds_thoughts_and_cached_is_inside_prompt():
    u = normalize(GEMINI_RESPONSE, "gemini")
    assert (u.input, u.cached_input, u.output, u.reasoning) == (10000, 6000, 1500, 1100)


def test_openai_responses_api_shape():
    u = from_openai(
        {
            "input_tokens": 500,
            "input_tokens_details": {"cached_tokens": 200},
            "output_tokens": 90,
            "output_tokens_details": {"reasoning_tokens": 40},
        }
    )
    assert (u.input, u.cached_input, u.output, u.reasoning) == (500, 200, 90, 40)


@pytest.mark.parametrize(
    ("payload", "provider", "genai_provider", "flavor"),
    [
        (OPENAI_RESPONSE, "openai", "openai", "chat"),
        (ANTHROPIC_RESPONSE, "anthropic", "anthropic", "default"),
        (GEMINI_RESPONSE, "gemini", "google", "default"),
    ],
)
def test_agrees_with_genai_prices_extract_usage(payload, provider, genai_provider, flavor):
    ours = normalize(payload, provider)
    theirs = genai_prices.extract_usage(payload, provider_id=genai_provider, api_flavor=flavor).usage
    assert ours.input == theirs.input_tokens
    assert ours.cached_input == (theirs.cache_read_tokens or 0)
    assert ours.cache_write == (theirs.cache_write_tokens or 0)
    assert ours.output == theirs.output_tokens


@pytest.mark.parametrize(
    ("payload", "provider", "model", "genai_provider"),
    [
        (OPENAI_RESPONSE, "openai", "gpt-4.1-mini", "openai"),
        (ANTHROPIC_RESPONSE, "anthropic", "claude-sonnet-4-5", "anthropic"),
        (GEMINI_RESPONSE, "gemini", "gemini-2.5-flash", "google"),
    ],
)
def test_priced_at_list_price_with_cached_tokens_as_cached(payload, provider, model, genai_provider):
    u = normalize(payload, provider)
    usd, source = Catalog(Settings()).cost(model, u.input, u.output, u.cached_input, u.cache_write)
    expected = list_cost(model, u.fresh_input, u.cached_input, u.cache_write, u.output)
    assert usd == pytest.approx(expected, rel=0.01)
    check = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=u.input,
            cache_read_tokens=u.cached_input,
            cache_write_tokens=u.cache_write,
            output_tokens=u.output,
        ),
        model,
        provider_id=genai_provider,
    ).total_price
    assert usd == pytest.approx(float(check), rel=0.01)
    assert source.startswith("genai-prices")
    # Pricing cached tokens as fresh would be visibly wrong: the test can tell the difference.
    if u.cached_input:
        assert usd < list_cost(model, u.input, 0, 0, u.output) * 0.99


def test_anthropic_stream_takes_last_cumulative_output_not_the_sum():
    s = StreamUsage("anthropic")
    s.feed(
        {
            "type": "message_start",
            "message": {
                "model": "claude-sonnet-4-5",
                "usage": {
                    "input_tokens": 1500,
                    "cache_read_input_tokens": 20000,
                    "cache_creation_input_tokens": 4000,
                    "output_tokens": 1,
                },
            },
        }
    )
    s.feed({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}})
    for n in (150, 420, 700):
        s.feed({"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": n}})
    assert s.usage() == normalize(ANTHROPIC_RESPONSE, "anthropic")


def test_gemini_and_openai_streams_take_the_last_usage():
    g = StreamUsage("gemini")
    g.feed({"usageMetadata": {"promptTokenCount": 10000, "candidatesTokenCount": 10}})
    g.feed(GEMINI_RESPONSE)
    assert g.usage().output == 1500
    o = StreamUsage("groq")  # any OpenAI-compatible provider
    o.feed({"choices": [{"delta": {"content": "h"}}], "usage": None})
    o.feed({"choices": [], "usage": OPENAI_RESPONSE["usage"]})
    assert o.usage().cached_input == 8000
    with pytest.raises(UsageError, match="no usage"):
        StreamUsage("openai").usage()


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"usage": {"prompt_tokens": -1, "completion_tokens": 2}}, "prompt_tokens"),
        ({"usage": {"prompt_tokens": "12", "completion_tokens": 2}}, "prompt_tokens"),
        ({"usage": "n/a"}, "no usage object"),
    ],
)
def test_bad_payloads_name_the_field(payload, match):
    with pytest.raises(UsageError, match=match):
        normalize(payload, "openai")


def test_usage_rejects_cached_outside_input():
    with pytest.raises(UsageError, match="input must include cached"):
        Usage(input=10, cached_input=20)


def test_deepseek_cache_hits_count_as_cached():
    u = normalize(
        {
            "usage": {
                "prompt_tokens": 900,
                "prompt_cache_hit_tokens": 600,
                "prompt_cache_miss_tokens": 300,
                "completion_tokens": 50,
            }
        },
        "deepseek",
    )
    assert (u.input, u.cached_input, u.output) == (900, 600, 50)


@pytest.mark.parametrize("prompt", [150_000, 250_000])
def test_long_context_tier_prices_the_whole_call(prompt):
    # Above 200k prompt tokens Claude Sonnet 4.5 bills every token at its long-context rates.
    usd, _ = Catalog(Settings()).cost("claude-sonnet-4-5", prompt, 2000, 100_000, 20_000)
    check = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=prompt, output_tokens=2000, cache_read_tokens=100_000, cache_write_tokens=20_000
        ),
        "claude-sonnet-4-5",
        provider_id="anthropic",
    ).total_price
    assert usd == pytest.approx(float(check), rel=0.01)
    base = (prompt - 120_000) * 3.0 + 100_000 * 0.30 + 20_000 * 3.75 + 2000 * 15.0
    assert usd == pytest.approx((base if prompt <= 200_000 else 2 * base - 2000 * 7.5) / 1e6, rel=0.01)
