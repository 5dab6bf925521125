"""CLI start-up: wall time of `python -c pass`, `agent-router --help` and `agent-router route "hi"`, each
the median of several runs in fresh processes, and their differences from the bare interpreter. Also lists
which heavy modules (numpy, httpx, pydantic, tiktoken, genai_prices, ...) each command imports. Prints
figures; asserts nothing.

    python bench/cli_startup.py [--repeat N]

Goals (issue 13): --help within 0.25 s of the interpreter, route within 0.5 s. The commands run as
`python -m agent_router` under this interpreter, so the figures do not depend on where the console script
was installed; settings are the built-in defaults (AGENT_ROUTER_HOME points at an empty folder, filled by the
warm-up run with what a first run leaves: the price and entry-point caches). PYTHONDONTWRITEBYTECODE is dropped
for the children, so they run from .pyc files as an installed wheel does (pip compiles at install time): with
it set, every run of an editable install compiles agent_router from source (~0.1 s) and times that.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ("numpy", "httpx", "httpx2", "pydantic", "tiktoken", "genai_prices", "sqlite_utils")
CASES: list[tuple[str, list[str]]] = [
    ("python -c pass", ["-c", "pass"]),
    ("agent-router --help", ["-m", "agent_router", "--help"]),
    ('agent-router route "hi"', ["-m", "agent_router", "route", "hi"]),
]
# Run the same command, then report which heavy modules it left in sys.modules (runs after click exits).
_PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('HEAVY', *[m for m in {heavy!r} if m in sys.modules], file=sys.stderr))\n"
    "sys.argv = {argv!r}\n"
    "import runpy; runpy.run_module('agent_router', run_name='__main__')\n"
)


def wall(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def heavy_imports(args: list[str], env: dict[str, str]) -> list[str]:
    if args[0] != "-m":
        return []
    code = _PROBE.format(heavy=HEAVY, argv=["agent-router", *args[2:]])
    err = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stderr
    line = next((ln for ln in err.splitlines() if ln.startswith("HEAVY")), "HEAVY")
    return line.split()[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=9, help="Runs per command (median reported).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as home:
        drop = ("AGENT_ROUTER_SETTINGS", "AGENT_ROUTER_HOME", "PYTHONDONTWRITEBYTECODE")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env["AGENT_ROUTER_HOME"] = home
        for _, a in CASES:  # warm the file cache (and write any .pyc) before timing
            wall(a, env)
        times: dict[str, list[float]] = {name: [] for name, _ in CASES}
        for _ in range(args.repeat):  # interleaved, so a busy moment hits every command alike
            for name, a in CASES:
                times[name].append(wall(a, env))
        base = statistics.median(times[CASES[0][0]])
        print(f"{'command':26} {'median s':>9} {'min s':>7} {'- python':>9}  heavy imports  ({args.repeat} runs)")
        for name, a in CASES:
            med = statistics.median(times[name])
            extra = "" if name == CASES[0][0] else f"{med - base:>+9.3f}"
            heavy = "" if name == CASES[0][0] else (", ".join(heavy_imports(a, env)) or "none")
            print(f"{name:26} {med:>9.3f} {min(times[name]):>7.3f} {extra:>9}  {heavy}")
        print("goals: --help within +0.250 s of python, route within +0.500 s")


if __name__ == "__main__":
    main()
