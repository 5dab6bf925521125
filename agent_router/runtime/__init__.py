"""The live pack inside a host process: the Runtime (settings, router, ledger, per-conversation state), the
switch_model policy and the reference agent loop."""

from .core import CallRecord, ConversationState, Runtime, activate, current, now

__all__ = ["CallRecord", "ConversationState", "Runtime", "activate", "current", "now"]
