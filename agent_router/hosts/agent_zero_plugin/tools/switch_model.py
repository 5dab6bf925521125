"""agent_router for Agent Zero: the `switch_model` tool (policy and ledger live in agent_router.runtime.switch)."""

try:  # Agent Zero v1.x
    from helpers.tool import Response, Tool
except ImportError:  # Agent Zero v0.9.x
    from python.helpers.tool import Response, Tool

import importlib.util
import sys
from pathlib import Path


def _boot():
    """The plugin's guard (agent_router_boot.py beside plugin.yaml, or in usr/ for v0.9), loaded by path."""
    here = Path(__file__).resolve()
    f = next(p / "agent_router_boot.py" for p in here.parents if (p / "agent_router_boot.py").is_file())
    mod = sys.modules.get(f"agent_router_boot:{f}")
    if mod is None:
        spec = importlib.util.spec_from_file_location("agent_router_boot", f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[f"agent_router_boot:{f}"] = mod
    return mod


class SwitchModel(Tool):
    async def execute(self, **kwargs):
        return Response(message=_boot().run_switch_model(self, __file__, **kwargs), break_loop=False)
