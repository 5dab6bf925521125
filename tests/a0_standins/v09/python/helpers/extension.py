"""Stand-in for Agent Zero v0.9.x python/helpers/extension.py: the Extension base class (async only)."""

from abc import abstractmethod
from typing import Any


class Extension:
    def __init__(self, agent: Any, **kwargs: Any):
        self.agent = agent
        self.kwargs = kwargs

    @abstractmethod
    def execute(self, **kwargs: Any) -> Any:
        pass
