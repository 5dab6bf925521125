"""Learned routing: features of a request, a quality model per reference model, calibration to a quality target,
the per-request adaptive layer, training (from rows or a ledger) and offline evaluation.

The names below come from `learned.router` and are imported on first use, so importing a light submodule
(`learned.evaluation`, `learned.features`) does not load numpy and the weights."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LearnedRouter", "LearnedSettings", "LedgerFeed", "calibrate", "load_model", "record_outcome",
           "sync_ledger"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".router", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
