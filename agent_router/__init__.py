"""agent_router: analyze, route, compress and account for an LLM agent's model calls.

The public API. The light names (errors, `hookimpl`) are imported here; the rest load on first use (module
`__getattr__`), so `import agent_router` (and `agent-router --help`) stays fast.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from typing import TYPE_CHECKING, Any

from .errors import AgentRouterError, InputError, SettingsError, UnknownModelError
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .analyzer import Analysis, analyze
    from .compression.compressor import compress
    from .ledger import Ledger, LedgerError
    from .providers import AllModelsFailed, ProviderError
    from .router import BudgetBlocked, Decision, NoModelFits, Router, route
    from .runtime.core import Runtime
    from .settings import Settings, load

# Public name -> the module that defines it, imported on first access.
_LAZY = {
    "Analysis": "agent_router.analyzer",
    "analyze": "agent_router.analyzer",
    "Router": "agent_router.router",
    "route": "agent_router.router",
    "Decision": "agent_router.router",
    "NoModelFits": "agent_router.router",
    "BudgetBlocked": "agent_router.router",
    "Settings": "agent_router.settings",
    "load": "agent_router.settings",
    "Ledger": "agent_router.ledger",
    "LedgerError": "agent_router.ledger",
    "Runtime": "agent_router.runtime.core",
    "compress": "agent_router.compression.compressor",
    "ProviderError": "agent_router.providers",
    "AllModelsFailed": "agent_router.providers",
}

__all__ = [
    "AgentRouterError",
    "AllModelsFailed",
    "Analysis",
    "BudgetBlocked",
    "Decision",
    "InputError",
    "Ledger",
    "LedgerError",
    "NoModelFits",
    "ProviderError",
    "Router",
    "Runtime",
    "Settings",
    "SettingsError",
    "UnknownModelError",
    "analyze",
    "compress",
    "hookimpl",
    "load",
    "route",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent_router' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
