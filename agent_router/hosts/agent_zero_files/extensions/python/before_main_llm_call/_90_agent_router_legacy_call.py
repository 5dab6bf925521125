"""agent_router for Agent Zero at `before_main_llm_call`:
v0.9 only: start the main chat call (swap the model through a copy of the agent's config).

Thin: forwards to agent_router's pluggy hooks (agent_router.hosts.agent_zero.forward).
"""

try:  # Agent Zero v1.x
    from helpers.extension import Extension
except ImportError:  # Agent Zero v0.9.x
    from python.helpers.extension import Extension

from agent_router.hosts.agent_zero import forward


class AgentRouterLegacyCall(Extension):
    async def execute(self, **kwargs):
        forward("before_main_llm_call", self, __file__, **kwargs)
