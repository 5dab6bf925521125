"""The learned router's `analyze` implementation: used when `learned.enabled` is true, tried before the
built-in heuristic (which is `trylast`). Returns None when learned routing is off, so the heuristic answers.

The learned router (with its adaptive state) belongs to the `Router` that asks (`context["router"].learned`);
called without one, a learned router is built for this call from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..analyzer import Analysis

_SETTINGS: Any = None  # agent_router.settings: imported on the first analysis (`agent-router --help` loads this
# module without pydantic), then kept rather than imported again on every routed request


@hookimpl
def analyze(messages: list[dict[str, Any]], context: dict[str, Any]) -> Analysis | None:
    global _SETTINGS
    if _SETTINGS is None:
        from .. import settings as _SETTINGS
    router = context.get("router")
    settings = getattr(router, "settings", None) or context.get("settings")
    if not isinstance(settings, _SETTINGS.Settings):
        settings = _SETTINGS.load()
    if not settings.learned.enabled:
        return None
    lr = getattr(router, "learned", None)
    if lr is None:
        from ..learned.router import LearnedRouter

        lr = LearnedRouter.from_settings(settings)
        if lr is None:
            return None
    t = settings.routing.thresholds
    return lr.analyze(messages, t.low, t.high)
