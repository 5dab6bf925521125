"""agent_router for Agent Zero at `message_loop_start`:
analyze and route the turn (the decision is kept for the turn).

Thin: forwards to agent_router's pluggy hooks (agent_router.hosts.agent_zero.forward).
"""

try:  # Agent Zero v1.x
    from helpers.extension import Extension
except ImportError:  # Agent Zero v0.9.x
    from python.helpers.extension import Extension

from agent_router.hosts.agent_zero import forward


class AgentRouterRoute(Extension):
    async def execute(self, **kwargs):
        forward("message_loop_start", self, __file__, **kwargs)
