"""Stand-in for Agent Zero v0.9.x python/helpers/extension.py: the Extension base class (async only)."""

from a0_base import Extension

__all__ = ["Extension"]
