"""Stand-in for Agent Zero v0.9.x python/helpers/tool.py: Response and the Tool base class."""

from a0_base import Response, Tool

__all__ = ["Response", "Tool"]
