"""agent_router for Agent Zero: the `switch_model` tool (policy and ledger live in agent_router.runtime.switch)."""

try:  # Agent Zero v1.x
    from helpers.tool import Response, Tool
except ImportError:  # Agent Zero v0.9.x
    from python.helpers.tool import Response, Tool

from agent_router.hosts.agent_zero import run_switch_model


class SwitchModel(Tool):
    async def execute(self, **kwargs):
        return Response(message=run_switch_model(self, __file__, **kwargs), break_loop=False)
