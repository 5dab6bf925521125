"""agent_router's Costs view data.

POST /api/plugins/agent_router/costs {"by": "chat" | "day" | "model" | "tier", "since": "7d"}."""

import importlib.util
import sys
from pathlib import Path

from helpers.api import ApiHandler, Request, Response


def _boot():
    f = Path(__file__).resolve().parents[1] / "agent_router_boot.py"
    mod = sys.modules.get(f"agent_router_boot:{f}")
    if mod is None:
        spec = importlib.util.spec_from_file_location("agent_router_boot", f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[f"agent_router_boot:{f}"] = mod
    return mod


class Costs(ApiHandler):
    async def process(self, input: dict, request: Request) -> dict | Response:
        return _boot().costs(__file__, input or {})
