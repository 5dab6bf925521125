"""Learned routing: features of a request, a quality model per reference model, calibration to a quality target,
the per-request adaptive layer, training (from rows or a ledger) and offline evaluation."""

from .router import LearnedRouter, LearnedSettings, LedgerFeed, calibrate, load_model, record_outcome, sync_ledger

__all__ = ["LearnedRouter", "LearnedSettings", "LedgerFeed", "calibrate", "load_model", "record_outcome",
           "sync_ledger"]
