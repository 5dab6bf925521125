"""agent_router: analyze, route, compress and account for an LLM agent's model calls."""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings

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

# Modules that moved into subsystem packages. Importing an old path still works, warns once, and gives the
# module itself (so patching through either name patches the same object).
_MOVED = {
    "agent_router.adaptive": "agent_router.learned.adaptive",
    "agent_router.learned_features": "agent_router.learned.features",
    "agent_router.learned_model": "agent_router.learned.model",
    "agent_router.learned_train": "agent_router.learned.train",
    "agent_router.learned_ledger": "agent_router.learned.ledger_rows",
    "agent_router.evaluation": "agent_router.learned.evaluation",
    "agent_router.embeddings": "agent_router.learned.embeddings.minilm",
    "agent_router.static_embeddings": "agent_router.learned.embeddings.static",
    "agent_router.text_blocks": "agent_router.compression.blocks",
    "agent_router.facts": "agent_router.compression.facts",
    "agent_router.summaries": "agent_router.compression.summaries",
    "agent_router.switch": "agent_router.runtime.switch",
    "agent_router.loop": "agent_router.runtime.loop",
    "agent_router.shared_state": "agent_router.providers.state",
    "agent_router.providers.shared_state": "agent_router.providers.state",
    "agent_router.demo_server": "agent_router.demo.server",
    "agent_router.ledger.store": "agent_router.ledger.stores.sqlite",
    "agent_router.ledger.pg_store": "agent_router.ledger.stores.postgresql",
    "agent_router.ledger.pg_migrations": "agent_router.ledger.migrations.postgresql",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(name, self) if name in _MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        warnings.warn(f"{spec.name} moved to {_MOVED[spec.name]}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(_MOVED[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        """The module is already loaded under its new name."""


sys.meta_path.append(_MovedModules())
