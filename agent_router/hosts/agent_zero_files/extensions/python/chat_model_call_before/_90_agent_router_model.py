"""agent_router for Agent Zero at `chat_model_call_before`:
check budgets, swap call_data['model'] for this call, start timing.

Thin: forwards to agent_router's pluggy hooks (agent_router.hosts.agent_zero.forward).
"""

try:  # Agent Zero v1.x
    from helpers.extension import Extension
except ImportError:  # Agent Zero v0.9.x
    from python.helpers.extension import Extension

from agent_router.hosts.agent_zero import forward


class AgentRouterChatModel(Extension):
    async def execute(self, **kwargs):
        forward("chat_model_call_before", self, __file__, **kwargs)
