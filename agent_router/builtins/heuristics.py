"""The built-in `analyze` implementation: the heuristic analyzer, tried after any plugin's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..analyzer import Analysis


@hookimpl(trylast=True)
def analyze(messages: list[dict[str, Any]], context: dict[str, Any]) -> Analysis:
    from ..analyzer import analyze as heuristic_analyze

    return heuristic_analyze(messages)
