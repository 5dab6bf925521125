"""Learned routing: features of a request, a quality model per reference model, calibration to a quality target,
the per-request adaptive layer, training (from rows or a ledger) and offline evaluation."""

from .router import LearnedRouter, LearnedSettings, calibrate, for_settings, record_outcome, reset, sync_ledger

__all__ = ["LearnedRouter", "LearnedSettings", "calibrate", "for_settings", "record_outcome", "reset",
           "sync_ledger"]
