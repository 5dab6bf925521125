"""agent_router for Agent Zero at `message_loop_prompts_after`:
fit the built prompt to the chosen model's budget (runs late, after other prompt edits).

Thin: forwards to agent_router's pluggy hooks (agent_router.hosts.agent_zero.forward).
"""

try:  # Agent Zero v1.x
    from helpers.extension import Extension
except ImportError:  # Agent Zero v0.9.x
    from python.helpers.extension import Extension

from agent_router.hosts.agent_zero import forward


class AgentRouterCompress(Extension):
    async def execute(self, **kwargs):
        forward("message_loop_prompts_after", self, __file__, **kwargs)
