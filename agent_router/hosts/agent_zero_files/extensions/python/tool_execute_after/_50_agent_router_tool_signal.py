"""agent_router for Agent Zero at `tool_execute_after`:
a tool that failed on the agent's answer is an implicit bad verdict on that answer (learned routing).

Thin: forwards to agent_router's pluggy hooks (agent_router.hosts.agent_zero.forward).
"""

try:  # Agent Zero v1.x
    from helpers.extension import Extension
except ImportError:  # Agent Zero v0.9.x
    from python.helpers.extension import Extension

from agent_router.hosts.agent_zero import forward


class AgentRouterToolSignal(Extension):
    async def execute(self, **kwargs):
        forward("tool_execute_after", self, __file__, **kwargs)
