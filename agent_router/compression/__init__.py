"""Compression: fit chat messages into a token budget without losing what matters (blocks, facts, summaries)."""

from .compressor import (
    Budget,
    CompressionResult,
    UtilityCaller,
    clear_summary_cache,
    compress,
    get_utility_caller,
    plan_budget,
    set_utility_caller,
    structure_problems,
    summarize_timeout,
    unclosed_fence,
)

__all__ = [
    "Budget", "CompressionResult", "clear_summary_cache", "compress", "get_utility_caller", "plan_budget",
    "set_utility_caller", "structure_problems", "summarize_timeout", "unclosed_fence", "UtilityCaller",
]
