"""Stand-in for Agent Zero v1.x helpers/extension.py: the Extension base class (sync or async execute)."""

from abc import abstractmethod
from typing import Any


class Extension:
    def __init__(self, agent: Any, **kwargs: Any):
        self.agent = agent
        self.kwargs = kwargs

    @abstractmethod
    def execute(self, **kwargs: Any) -> Any:
        pass
