"""agent_router for Agent Zero at `chat_model_call_after`:
record the call's tokens and cost in the ledger.

Thin: forwards to agent_router's pluggy hooks (agent_router.hosts.agent_zero.forward).
"""

try:  # Agent Zero v1.x
    from helpers.extension import Extension
except ImportError:  # Agent Zero v0.9.x
    from python.helpers.extension import Extension

from agent_router.hosts.agent_zero import forward


class AgentRouterChatUsage(Extension):
    async def execute(self, **kwargs):
        forward("chat_model_call_after", self, __file__, **kwargs)
