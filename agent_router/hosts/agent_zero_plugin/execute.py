"""Install (again) agent_router's Python packages into usr/agent_router/site/.

Agent Zero runs this from Plugins (sidebar) > agent_router > Execute, in its own Python. Needed only when the
packages are missing: after they were removed, or when the first install had no network. A container rebuild
keeps them (they live on the volume)."""

import importlib.util
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("agent_router_hooks", Path(__file__).resolve().parent / "hooks.py")
hooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hooks)
res = hooks.install_packages()
if res["ok"]:
    print(f"agent_router: {len(res['installed'])} packages in {res['site']}")
else:
    print(f"agent_router: {res['error']}")
sys.exit(0 if res["ok"] else 1)
