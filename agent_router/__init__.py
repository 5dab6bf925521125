"""agent_router: analyze, route, compress and account for an LLM agent's model calls."""

from .analyzer import Analysis, analyze
from .errors import AgentRouterError, InputError, SettingsError, UnknownModelError
from .router import Decision, Router, route
from .settings import Settings, load

__all__ = [
    "AgentRouterError",
    "Analysis",
    "Decision",
    "InputError",
    "Router",
    "Settings",
    "SettingsError",
    "UnknownModelError",
    "analyze",
    "load",
    "route",
]
