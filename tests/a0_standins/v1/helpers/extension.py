"""Stand-in for Agent Zero v1.x helpers/extension.py: the Extension base class (sync or async execute)."""

from a0_base import Extension

__all__ = ["Extension"]
