"""Import paths from before the package was reorganised into subsystems keep working, with a DeprecationWarning."""

import importlib
import sys

import pytest

from agent_router import _MOVED


@pytest.mark.parametrize("old", sorted(_MOVED))
def test_old_path_warns_and_is_the_moved_module(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="moved to"):
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(_MOVED[old])


def test_modules_that_became_packages_keep_their_names():
    from agent_router.compression import compress, plan_budget, set_utility_caller  # noqa: F401
    from agent_router.learned import LearnedRouter, record_outcome  # noqa: F401
    from agent_router.runtime import Runtime, activate, current  # noqa: F401

    assert importlib.import_module("agent_router.hosts.agent_zero").forward
