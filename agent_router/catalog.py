"""The model catalog: each configured model with its price, context window, capabilities and tier.

Prices come from a settings override when given, else from `genai-prices`, whose table ships inside the
package (no network). Every price says where it came from, so the ledger can say which source priced a call.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import SettingsError, UnknownModelError
from .home import read_cache, write_cache
from .settings import TIERS, Capabilities, ModelConfig, Settings
from .settings import _problems as settings_problems

TIER_RANK = {t: i for i, t in enumerate(TIERS)}
# Prior quality by tier, for strategies that weigh quality when a model gives none.
_TIER_QUALITY = {"utility": 0.55, "chat": 0.75, "premium": 0.92}
_DEFAULT_CONTEXT = 128_000

# Known capabilities and windows of common model families, for models the settings leave unspecified.
_FAMILY_DEFAULTS: list[tuple[str, dict[str, Any]]] = [
    ("claude", {"vision": True, "context": 200_000}),
    ("gemini", {"vision": True, "context": 1_048_576}),
    ("gpt-4o", {"vision": True, "context": 128_000}),
    ("gpt-4.1", {"vision": True, "context": 1_047_576}),
    ("gpt-5", {"vision": True, "reasoning": True, "context": 400_000}),
    ("o1", {"vision": True, "reasoning": True, "context": 200_000}),
    ("o3", {"vision": True, "reasoning": True, "context": 200_000}),
    ("o4", {"vision": True, "reasoning": True, "context": 200_000}),
    ("gpt-4-turbo", {"vision": True, "context": 128_000}),
    ("gpt-3.5", {"context": 16_385}),
    ("deepseek", {"context": 64_000}),
    ("llama", {"context": 128_000}),
    ("mistral", {"context": 32_000}),
    ("mixtral", {"context": 32_000}),
    ("qwen", {"context": 32_000}),
]


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens, and the source that gave them."""

    input: float
    output: float
    cached_input: float
    cache_write: float
    source: str  # "settings" | "genai-prices <version>" | "unknown"
    # Long-context tiers, ascending: (start, price). A prompt of MORE than `start` input tokens pays that
    # tier's rates on all its tokens (the "cliff" model of Anthropic, Google and genai-prices).
    tiers: tuple[tuple[int, ModelPrice], ...] = ()

    @property
    def known(self) -> bool:
        return self.source != "unknown"

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
             cache_write_tokens: int = 0) -> float:
        """USD at list price. `input_tokens` INCLUDES cached reads and cache writes (the convention of
        agent_router.usage.Usage and of OpenAI); Anthropic-style counts are summed first (from_anthropic)."""
        p = self
        for start, tier in self.tiers:
            if input_tokens > start:
                p = tier
        fresh = max(0, input_tokens - cached_input_tokens - cache_write_tokens)
        return (
            fresh * p.input
            + cached_input_tokens * p.cached_input
            + cache_write_tokens * p.cache_write
            + output_tokens * p.output
        ) / 1e6


@dataclass(frozen=True)
class ModelInfo:
    """One model as the router sees it."""

    alias: str
    config: ModelConfig
    tier: str | None
    context_window: int
    max_output_tokens: int
    capabilities: Capabilities
    price: ModelPrice
    quality: float
    latency_ms: float
    extra: dict[str, Any] = field(default_factory=dict)
    # The config's provider and name, read ~25 times per routed call: attributes, not properties.
    provider: str = field(init=False, repr=False, compare=False)
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "provider", self.config.provider)
        object.__setattr__(self, "name", self.config.name)

    def estimate_cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        """List-price arithmetic in USD; cached tokens are a subset of input tokens."""
        p = self.price
        fresh = max(0, input_tokens - cached_input_tokens)
        return (fresh * p.input + cached_input_tokens * p.cached_input + output_tokens * p.output) / 1e6


def _family(name: str) -> dict[str, Any]:
    low = name.lower().split("/")[-1]
    for prefix, d in _FAMILY_DEFAULTS:
        if low.startswith(prefix):
            return d
    return {}


@lru_cache(maxsize=1)
def _genai_version() -> str:
    from importlib.metadata import version

    return f"genai-prices {version('genai-prices')}"


_PRICE_CACHE = "genai-prices"
_price_lock = threading.Lock()


@lru_cache(maxsize=1)
def _table_stamp() -> str | None:
    """Which genai-prices table is installed (its data file's path, size and mtime), found without importing
    the package (importing it costs ~0.15 s: its data module, pydantic types and an HTTP client)."""
    try:
        spec = importlib.util.find_spec("genai_prices")
        data = Path(spec.origin).parent / "data.py" if spec and spec.origin else None
        st = data.stat() if data else None
    except (ImportError, ValueError, OSError):
        return None
    return None if st is None else f"{data}:{st.st_size}:{st.st_mtime_ns}"


@lru_cache(maxsize=1)
def _price_cache() -> dict[str, Any]:
    """The lookups already made in this table, from $AGENT_ROUTER_HOME/cache (empty when stale or absent)."""
    stamp = _table_stamp()
    return dict(read_cache(_PRICE_CACHE, stamp) or {}) if stamp else {}


def _price_json(p: ModelPrice | None) -> dict[str, Any] | None:
    return None if p is None else asdict(p)


def _price_of(d: dict[str, Any] | None) -> ModelPrice | None:
    if d is None:
        return None
    return ModelPrice(**{**d, "tiers": tuple((start, _price_of(t)) for start, t in d.get("tiers", ()))})


def _cached_price(hit: Any) -> tuple[ModelPrice | None, int | None] | None:
    """A cache file's entry as (price, context window); None when absent or of another shape (look it up)."""
    if not (isinstance(hit, list) and len(hit) == 2):
        return None
    try:
        return _price_of(hit[0]), hit[1]
    except (TypeError, ValueError):
        return None


@lru_cache(maxsize=512)
def _packaged(provider: str, name: str) -> tuple[ModelPrice | None, int | None]:
    """Price and context window from the packaged genai-prices table, or (None, None). Each lookup is kept in a
    cache file for the installed table, so a later process prices the same models without importing it."""
    stamp = _table_stamp()
    key = json.dumps([provider, name])
    hit = _cached_price(_price_cache().get(key)) if stamp else None
    if hit is not None:
        return hit
    found = _lookup(provider, name)
    if stamp:
        with _price_lock:
            cache = _price_cache()
            cache[key] = [_price_json(found[0]), found[1]]
            write_cache(_PRICE_CACHE, stamp, dict(cache))
    return found


def _lookup(provider: str, name: str) -> tuple[ModelPrice | None, int | None]:
    """`_packaged` from the genai-prices table itself."""
    try:
        from genai_prices import data_snapshot
    except ImportError:  # pragma: no cover - a hard dependency, but never crash routing over prices
        return None, None
    snap = data_snapshot.get_snapshot()
    provider_id = {"gemini": "google", "openai_compatible": None}.get(provider, provider)
    model = None
    for pid in ([provider_id] if provider_id else []) + [None]:
        try:
            _, model = snap.find_provider_model(name.split("/")[-1] if pid is None else name, None, pid, None)
            break
        except LookupError:
            continue
    if model is None:
        return None, None
    prices = model.prices
    if isinstance(prices, list):  # conditional prices: the last one is the newest
        prices = prices[-1].prices if prices else None
    if prices is None:
        return None, model.context_window

    def num(key: str) -> float | None:
        v = getattr(prices, key, None)
        if v is None:
            return None
        if isinstance(v, Decimal | int | float):
            return float(v)
        base = getattr(v, "base", None)  # TieredPrices: the base (lowest-volume) tier
        return float(base) if base is not None else None

    inp, out = num("input_mtok"), num("output_mtok")
    if inp is None or out is None:
        return None, model.context_window
    cached = num("cache_read_mtok")
    write = num("cache_write_mtok")

    def at(start: int | None, key: str, base: float | None) -> float | None:
        # The rate of `key` for prompts above `start`: its highest tier not above `start`, else its base.
        v = getattr(prices, key, None)
        best = base
        for t in getattr(v, "tiers", None) or []:
            if start is not None and t.start <= start:
                best = float(t.price)
        return best

    starts = sorted({t.start for k in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
                     for t in (getattr(getattr(prices, k, None), "tiers", None) or [])})
    tiers = []
    for st in starts:
        ti, to = at(st, "input_mtok", inp), at(st, "output_mtok", out)
        tc, tw = at(st, "cache_read_mtok", cached), at(st, "cache_write_mtok", write)
        tiers.append((st, ModelPrice(
            input=ti or inp, output=to or out, cached_input=ti if tc is None else tc,
            cache_write=ti if tw is None else tw, source=_genai_version(),
        )))
    price = ModelPrice(
        input=inp,
        output=out,
        cached_input=inp if cached is None else cached,
        cache_write=inp if write is None else write,
        source=_genai_version(),
        tiers=tuple(tiers),
    )
    return price, model.context_window


def price_for(cfg: ModelConfig) -> ModelPrice:
    """The model's price: settings override, else the packaged table, else unknown (zero, flagged)."""
    if cfg.price is not None:
        p = cfg.price
        return ModelPrice(
            input=p.input,
            output=p.output,
            cached_input=p.input if p.cached_input is None else p.cached_input,
            cache_write=p.input if p.cache_write is None else p.cache_write,
            source="settings",
        )
    packaged, _ = _packaged(cfg.provider, cfg.name)
    return packaged or ModelPrice(0.0, 0.0, 0.0, 0.0, "unknown")


class Catalog:
    """Models from settings and from plugins (`register_models`), resolved to prices, windows, capabilities
    and tiers. `pm`: None (default) asks the installed plugins; False asks none; else that plugin manager."""

    def __init__(self, settings: Settings, pm: Any = None):
        from .plugins import manager

        self.settings = settings
        self._models: dict[str, ModelInfo] = {}
        self._plugin_tiers: dict[str, list[str]] = {t: [] for t in TIERS}
        for alias, cfg in settings.models.items():
            self._models[alias] = self._build(alias, cfg)
        plugins = manager(pm)
        if plugins is not None:
            plugins.hook.register_models(register=self._register)
        self._by_name = {m.name: m for m in self._models.values()}

    def _register(self, alias: str, config: dict[str, Any] | ModelConfig, tier: str | None = None) -> None:
        """The `register` a `register_models` hook calls. The settings' own models win over a plugin's."""
        where = f"register_models({alias!r})"
        if not isinstance(alias, str) or not alias:
            raise SettingsError(where, [("$.alias", "expected a non-empty string")])
        if tier is not None and tier not in TIERS:
            raise SettingsError(where, [("$.tier", f"expected one of {', '.join(TIERS)} or None, got {tier!r}")])
        if alias in self._models:
            return
        try:
            cfg = config if isinstance(config, ModelConfig) else ModelConfig.model_validate(config)
        except ValidationError as err:
            raise SettingsError(where, settings_problems(err)) from None
        self._models[alias] = self._build(alias, cfg, tier)
        if tier is not None:
            self._plugin_tiers[tier].append(alias)

    def _build(self, alias: str, cfg: ModelConfig, plugin_tier: str | None = None) -> ModelInfo:
        fam = _family(cfg.name)
        _, packaged_window = _packaged(cfg.provider, cfg.name)
        window = cfg.context_window or packaged_window or fam.get("context") or _DEFAULT_CONTEXT
        if cfg.capabilities is not None:
            caps = cfg.capabilities
            # Fields the user did not write fall back to family knowledge.
            given = cfg.capabilities.model_fields_set
            caps = Capabilities(
                tools=caps.tools,
                vision=caps.vision if "vision" in given else fam.get("vision", False),
                json=caps.json_mode,
                reasoning=caps.reasoning if "reasoning" in given else fam.get("reasoning", False),
            )
        else:
            caps = Capabilities(vision=fam.get("vision", False), reasoning=fam.get("reasoning", False))
        tier = self.settings.tier_of(alias) or plugin_tier
        quality = cfg.quality if cfg.quality is not None else _TIER_QUALITY.get(tier or "chat", 0.75)
        latency = cfg.latency_ms if cfg.latency_ms is not None else 400.0 + 400.0 * TIER_RANK.get(tier or "chat", 1)
        return ModelInfo(
            alias=alias,
            config=cfg,
            tier=tier,
            context_window=window,
            max_output_tokens=cfg.max_output_tokens,
            capabilities=caps,
            price=price_for(cfg),
            quality=quality,
            latency_ms=latency,
        )

    def __iter__(self):
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, alias: object) -> bool:
        return alias in self._models

    def get(self, alias_or_name: str) -> ModelInfo:
        """A model by alias, or by its provider model name; UnknownModelError names the known aliases."""
        m = self._models.get(alias_or_name) or self._by_name.get(alias_or_name)
        if m is None:
            raise UnknownModelError(
                f"unknown model {alias_or_name!r}; known aliases: {', '.join(sorted(self._models))}"
            )
        return m

    def find(self, alias_or_name: str) -> ModelInfo | None:
        """Like get(), but None when unknown."""
        return self._models.get(alias_or_name) or self._by_name.get(alias_or_name)

    def tier_models(self, tier: str) -> list[ModelInfo]:
        """Models of a tier, in preference order: the settings' list, then the plugins' models of that tier."""
        listed = self.settings.tiers.get(tier, [])  # type: ignore[call-overload]
        return [self._models[a] for a in [*listed, *self._plugin_tiers.get(tier, [])]]

    def cost(
        self,
        alias_or_name: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> tuple[float, str]:
        """USD cost and price source. Input tokens include cached and cache-write tokens (OpenAI's convention)."""
        p = self.get(alias_or_name).price
        return p.cost(input_tokens, output_tokens, cached_input_tokens, cache_write_tokens), p.source
