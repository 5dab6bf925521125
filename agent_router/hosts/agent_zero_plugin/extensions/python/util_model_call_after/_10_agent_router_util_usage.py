"""agent_router for Agent Zero at `util_model_call_after`:
record the utility call's tokens and cost in the ledger.

Thin: forwards through the plugin's guard (agent_router_boot.py) to agent_router's hooks;
without the pack the agent keeps working unrouted.
"""

try:  # Agent Zero v1.x
    from helpers.extension import Extension
except ImportError:  # Agent Zero v0.9.x
    from python.helpers.extension import Extension

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


forward = _boot().forward


class AgentRouterUtilUsage(Extension):
    async def execute(self, **kwargs):
        forward("util_model_call_after", self, __file__, **kwargs)
