"""The built-in `analyze` implementation: the heuristic analyzer, tried after any plugin's."""

from __future__ import annotations

from typing import Any

from ..analyzer import Analysis
from ..analyzer import analyze as heuristic_analyze
from ..hookspecs import hookimpl


@hookimpl(trylast=True)
def analyze(messages: list[dict[str, Any]], context: dict[str, Any]) -> Analysis:
    return heuristic_analyze(messages)
