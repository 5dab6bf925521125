"""agent_router for Agent Zero at `util_model_call_before`:
route the utility call (never above routing.utility_max_tier) and swap its model.

Thin: forwards to agent_router's pluggy hooks (agent_router.hosts.agent_zero.forward).
"""

try:  # Agent Zero v1.x
    from helpers.extension import Extension
except ImportError:  # Agent Zero v0.9.x
    from python.helpers.extension import Extension

from agent_router.hosts.agent_zero import forward


class AgentRouterUtilModel(Extension):
    async def execute(self, **kwargs):
        forward("util_model_call_before", self, __file__, **kwargs)
