"""Stand-in for Agent Zero v1.x helpers/tool.py: Response and the Tool base class."""

from a0_base import Response, Tool

__all__ = ["Response", "Tool"]
