"""The base classes both Agent Zero layouts define alike (v1.x `helpers.*`, v0.9.x `python.helpers.*`): the
layout folders re-export them under their own module names."""

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass
class Response:
    message: str
    break_loop: bool
    additional: dict[str, Any] | None = None


class Tool:
    def __init__(
        self,
        agent: Any,
        name: str,
        method: str | None,
        args: dict,
        message: str,
        loop_data: Any,
        **kwargs: Any,
    ) -> None:
        self.agent = agent
        self.name = name
        self.method = method
        self.args = args
        self.loop_data = loop_data
        self.message = message
        self.progress = ""

    @abstractmethod
    async def execute(self, **kwargs: Any) -> Response:
        pass


class Extension:
    def __init__(self, agent: Any, **kwargs: Any):
        self.agent = agent
        self.kwargs = kwargs

    @abstractmethod
    def execute(self, **kwargs: Any) -> Any:
        pass
