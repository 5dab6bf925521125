"""Stand-in for Agent Zero's models.py: ModelConfig / ModelType / get_chat_model, and a chat model whose
`unified_call` answers like LiteLLM with `mock_response` (the text given in its kwargs)."""

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ModelType(Enum):
    CHAT = "Chat"
    EMBEDDING = "Embedding"


@dataclass
class ModelConfig:
    type: ModelType
    provider: str
    name: str
    api_key: str = ""
    api_base: str = ""
    ctx_length: int = 0
    limit_requests: int = 0
    limit_input: int = 0
    limit_output: int = 0
    vision: bool = False
    kwargs: dict = field(default_factory=dict)

    def build_kwargs(self) -> dict:
        kwargs = self.kwargs.copy() or {}
        if self.api_key and "api_key" not in kwargs:
            kwargs["api_key"] = self.api_key
        if self.api_base and "api_base" not in kwargs:
            kwargs["api_base"] = self.api_base
        return kwargs


class ChatModel:
    def __init__(self, provider: str, model: str, model_config: ModelConfig | None = None, **kwargs: Any):
        self.model_name = f"{provider}/{model}"
        self.provider = provider
        self.kwargs = kwargs
        self.a0_model_conf = model_config

    async def unified_call(
        self, system_message: str = "", user_message: str = "", messages: Any = None, **kwargs: Any
    ) -> tuple[str, str]:
        return str(self.kwargs.get("mock_response", "")), ""


def get_chat_model(
    provider: str, name: str, model_config: ModelConfig | None = None, **kwargs: Any
) -> ChatModel:
    return ChatModel(provider, name, model_config, **kwargs)
