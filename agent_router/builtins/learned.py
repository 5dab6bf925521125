"""The learned router's `analyze` implementation: used when `learned.enabled` is true, tried before the
built-in heuristic (which is `trylast`). Returns None when learned routing is off, so the heuristic answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..analyzer import Analysis


@hookimpl
def analyze(messages: list[dict[str, Any]], context: dict[str, Any]) -> Analysis | None:
    from ..settings import Settings, load

    settings = context.get("settings")
    if not isinstance(settings, Settings):
        settings = load()
    if not settings.learned.enabled:
        return None  # before importing the learned router: heuristic routing loads no numpy
    from ..learned.router import for_settings

    lr = for_settings(settings)
    if lr is None:
        return None
    t = settings.routing.thresholds
    return lr.analyze(messages, t.low, t.high)
