import socket

import pytest

from agent_router import hookspecs
from agent_router.analyzer import analyze
from agent_router.catalog import Catalog
from agent_router.errors import InputError, UnknownModelError
from agent_router.plugins import load_plugins
from agent_router.router import BudgetBlocked, NoModelFits, Router
from agent_router.settings import Settings
from agent_router.tokens import TokenCounter


def user(text):
    return [{"role": "user", "content": text}]


HARD = ("Design a distributed rate limiter for a multi-region API gateway. Compare token bucket and sliding "
        "window approaches, analyze failure modes, prove the consistency guarantees under network partitions, "
        "then write the core implementation in Go with tests.")


def small_settings(**routing):
    return Settings.model_validate({
        "models": {
            "cheap": {"provider": "openai", "name": "gpt-4.1-nano", "context_window": 4000, "max_output_tokens": 500,
                      "capabilities": {"vision": False}},
            "mid": {"provider": "openai", "name": "gpt-4.1-mini", "capabilities": {"vision": True}},
            "top": {"provider": "anthropic", "name": "claude-sonnet-4-5"},
            "coder": {"provider": "openai", "name": "gpt-4.1", "price": {"input": 1, "output": 2}},
        },
        "tiers": {"utility": "cheap", "chat": "mid", "premium": ["top", "coder"]},
        "routing": routing,
        # These tests are about tier and model selection for a complexity score: the heuristic's, pinned.
        "learned": {"enabled": False},
    })


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_prices_come_from_packaged_table_or_settings():
    cat = Catalog(small_settings())
    mid = cat.get("mid")
    assert mid.price.source.startswith("genai-prices")
    assert mid.price.input == pytest.approx(0.4) and mid.price.output == pytest.approx(1.6)
    assert cat.get("coder").price.source == "settings"
    usd, src = cat.cost("mid", input_tokens=1_000_000, output_tokens=1_000_000, cached_input_tokens=500_000)
    assert usd == pytest.approx(0.5 * 0.4 + 0.5 * 0.1 + 1.6) and src.startswith("genai-prices")
    assert cat.get("top").context_window == 200_000
    with pytest.raises(UnknownModelError, match="known aliases: cheap, coder, mid, top"):
        cat.get("gpt-9")


def test_token_counts_are_offline_and_cached():
    c = TokenCounter()
    exact = c.count_text("hello world", "openai", "gpt-4")
    assert exact.source == "counted" and exact.tokens == 2
    est = c.count_text("hello world", "anthropic", "claude-sonnet-4-5")
    assert est.source == "estimated"
    history = [{"role": "user", "content": f"message number {i} " * 50} for i in range(200)]
    c.count_messages(history, "openai", "gpt-4")
    misses = c.misses
    c.count_messages(history + [{"role": "assistant", "content": "one more"}], "openai", "gpt-4")
    assert c.misses == misses + 1  # only the new message was tokenized


def test_analyzer_separates_easy_from_hard_and_types_tasks():
    easy, hard = analyze(user("hi")), analyze(user(HARD))
    assert easy.score < 0.3 < hard.score
    assert analyze(user("Write a Python function that reverses a linked list.")).task_type == "code"
    assert analyze(user("Solve for x: 3x + 7 = 22. What is x?")).task_type == "math"
    assert analyze(user("Write a haiku about autumn rain")).task_type == "creative"
    img = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]
    a = analyze(img)
    assert a.task_type == "vision" and a.needs_vision
    assert all(isinstance(r, str) and r for r in hard.reasons)


def test_few_shot_examples_are_not_judged_as_the_question():
    shots = "".join(f"Q{i}: pick one\nA) x\nB) y\nAnswer:\nA\n\n" for i in range(5))
    with_shots = analyze(user(shots + "Q: pick one\nA) x\nB) y\nAnswer:"))
    alone = analyze(user("Q: pick one\nA) x\nB) y\nAnswer:"))
    assert abs(with_shots.features["length"] - alone.features["length"]) < 1e-9


def test_route_explains_and_tiers_follow_complexity():
    r = Router(small_settings())
    d_easy = r.route(user("hi"))
    assert d_easy.tier == "utility" and d_easy.model == "cheap"
    assert any("complexity" in x for x in d_easy.reasons)
    assert d_easy.estimated_cost_usd > 0 and d_easy.fallbacks
    d_hard = r.route(user(HARD))
    assert d_hard.tier in ("chat", "premium")


def test_images_need_vision():
    r = Router(small_settings())
    img = [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                        {"type": "image_url", "image_url": {"url": "data:,"}}]}]
    d = r.route(img)
    assert d.model != "cheap" and any("no vision" in x for x in d.reasons)


def test_context_that_does_not_fit_moves_to_a_bigger_window():
    r = Router(small_settings())
    d = r.route(user("hello " * 5000), {"override": {"tier": "utility"}})
    assert d.model != "cheap"
    assert any("does not fit" in x for x in d.reasons)


def test_nothing_fits_is_a_clear_error():
    # Small windows everywhere: a 30k-token prompt fits no model (the error does not depend on the size).
    s = small_settings()
    s = s.model_copy(update={"models": {a: m.model_copy(update={"context_window": 8000}) for a, m in s.models.items()}})
    r = Router(s)
    with pytest.raises(NoModelFits, match="does not fit window"):
        r.route(user("word " * 30_000))


def test_budget_downgrades_or_blocks():
    r = Router(small_settings(strategy="quality_first"))
    d = r.route(user(HARD), {"budget_remaining_usd": 0.0005})
    assert d.tier == "utility" and any("budget" in x for x in d.reasons)
    with pytest.raises(BudgetBlocked, match="exceeds the remaining budget"):
        r.route(user(HARD), {"budget_remaining_usd": 0.0005, "on_exceed": "block"})


def test_strategies_and_overrides():
    premium = {"override": {"tier": "premium"}}
    assert Router(small_settings(strategy="cost_optimized")).route(user(HARD), premium).model == "coder"
    assert Router(small_settings(strategy="quality_first")).route(user("hi")).tier == "chat"
    assert Router(small_settings(strategy="manual", manual_model="top")).route(user("hi")).model == "top"
    rr = Router(small_settings(strategy="round_robin"))
    picks = {rr.route(user(HARD), {"override": {"tier": "premium"}}).model for _ in range(4)}
    assert picks == {"top", "coder"}
    d = Router(small_settings()).route(user("hi"), {"override": {"model": "top", "reason": "agent asked"}})
    assert d.model == "top" and "agent asked" in " ".join(d.reasons)
    assert Router(small_settings(task_preferences={"code": "coder"})).route(
        user("Write a Python function that reverses a linked list.")).model == "coder"


def test_utility_calls_never_reach_premium_by_default():
    d = Router(small_settings()).route(user(HARD + " " + HARD), {"call_kind": "utility"})
    assert d.tier in ("utility", "chat")


def test_unhealthy_models_are_skipped():
    d = Router(small_settings()).route(user("hi"), {"unhealthy": ["cheap"]})
    assert d.model != "cheap" and d.fallbacks


@pytest.mark.parametrize("bad,match", [
    ([], "is empty"),
    ("nope", "expected a list"),
    ([{"role": "robot", "content": "x"}], "role"),
    ([{"role": "user"}], "content: missing"),
    ([{"role": "user", "content": "   "}], "every message is empty"),
])
def test_bad_messages_are_input_errors(bad, match):
    with pytest.raises(InputError, match=match):
        Router(small_settings()).route(bad)


def test_every_hook_is_documented_and_builtins_are_plugins():
    pm = load_plugins()
    specs = [getattr(hookspecs, n) for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "agent_router_spec")]
    assert len(specs) >= 13
    for spec in specs:
        assert spec.__doc__ and len(spec.__doc__.strip()) > 20, spec.__name__
    names = {pm.get_name(p) for p in pm.get_plugins()}
    assert "agent_router.builtins.heuristics" in names and "agent_router.commands.core" in names


def test_a_plugin_can_replace_the_analyzer():
    from agent_router.analyzer import Analysis

    class Always:
        @hookspecs.hookimpl
        def analyze(self, messages, context):
            return Analysis(score=0.99, task_type="research", reasons=["plugin says so"])

    pm = load_plugins()
    plugin = Always()
    pm.register(plugin, "always-premium")
    try:
        d = Router(small_settings(), pm=pm).route(user("hi"))
        assert d.tier == "premium" and "plugin says so" in d.reasons[0]
    finally:
        pm.unregister(plugin)
    assert Router(small_settings(), pm=pm).route(user("hi")).tier == "utility"




def test_huge_input_and_unknown_model_are_clear_errors():
    r = Router(small_settings())
    with pytest.raises(InputError, match="larger than 20,000,000 characters at message 0"):
        r.route(user("x" * 20_000_001))
    with pytest.raises(UnknownModelError, match="unknown model 'gpt-9'; known aliases"):
        r.route(user("hi"), {"override": {"model": "gpt-9"}})
