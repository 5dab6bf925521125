"""Host adapters: how the core reaches a host's objects (agent, loop_data, call_data).

The core never imports a host. Each host is one adapter implementing `HostAdapter`; the built-in host-loop
hooks (`agent_router.builtins.host_loop`) only talk to host objects through it, so they run the same in
Agent Zero, in the reference loop (`agent_router.runtime.loop`) and in tests.

Messages crossing the adapter are OpenAI-shape dicts (`{"role": ..., "content": ...}`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..catalog import ModelInfo


@runtime_checkable
class HostAdapter(Protocol):
    """The small surface of a host the core needs."""

    name: str

    def conversation_id(self, agent: Any) -> str:
        """A stable id of the conversation (chat) the agent is in; budgets and overrides are kept per id."""
        ...

    def messages(self, agent: Any, loop_data: Any) -> list[dict[str, Any]]:
        """The conversation so far, newest last, at the start of a loop iteration (for routing)."""
        ...

    def prompt_messages(self, agent: Any, loop_data: Any) -> list[dict[str, Any]]:
        """The prompt the host built for this iteration (system + history)."""
        ...

    def set_prompt_messages(self, agent: Any, loop_data: Any, messages: list[dict[str, Any]]) -> None:
        """Replace the history part of the iteration's prompt (after compression)."""
        ...

    def call_messages(self, call_data: Any, kind: str) -> list[dict[str, Any]]:
        """The messages of one model call (`kind` is "chat" or "utility")."""
        ...

    def is_main_call(self, agent: Any, call_data: Any) -> bool:
        """Whether this chat call is the loop iteration's own (it takes the turn's decision); other chat calls
        (a tool asking a model about a document) are routed on their own messages."""
        ...

    def set_model(self, agent: Any, call_data: Any, model: ModelInfo, kind: str) -> None:
        """Make this one call use `model`."""
        ...

    def response_text(self, response: Any, reasoning: Any = None) -> str:
        """The generated text of a call (response and reasoning), for counting output tokens."""
        ...

    def provider_usage(self, call_data: Any, response: Any) -> Any | None:
        """The provider-reported usage payload of a call (OpenAI/Anthropic/Gemini shape), or None."""
        ...

    def call_utility_model(self, agent: Any, system: str, message: str) -> Any:
        """Ask the host's utility model (through the host, so the utility hooks fire); may be awaitable."""
        ...
