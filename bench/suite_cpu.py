"""Where the test suite's CPU goes: runs the README's test command with a small pytest plugin that charges each
test the CPU its worker used (its own, and that of the child processes it waited for: servers it started,
real `agent-router` processes, Agent Zero's), then prints the total, and the files and tests that cost most.
A server a fixture keeps for a module is charged to the test during which it exits.

The suite's wall time on a 2-CPU machine is bounded by its CPU time / 2: this says what to cut.

    python bench/suite_cpu.py [--top 20] [pytest arguments...]

Other arguments go to pytest (e.g. `tests/test_gateway.py -n 0`). The plugin writes one JSON file per worker
in a temporary folder, read back here; nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class Plugin:
    """Per test: CPU seconds of this process and of the children it reaped while the test ran."""

    def __init__(self, out: str):
        self.out = out
        self.tests: dict[str, list[float]] = {}
        self._t0: tuple[float, float, float] | None = None

    @staticmethod
    def _cpu() -> tuple[float, float, float]:
        s = resource.getrusage(resource.RUSAGE_SELF)
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime, time.monotonic()

    def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> None:
        self._t0 = self._cpu()

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        if self._t0 is None:  # the xdist controller sees the workers' reports, not their tests
            return
        now = self._cpu()
        self.tests[nodeid] = [now[0] - self._t0[0], now[1] - self._t0[1], now[2] - self._t0[2]]

    def pytest_sessionfinish(self, session: Any) -> None:
        if self.tests:
            Path(self.out, f"{os.getpid()}.json").write_text(json.dumps(self.tests))


def pytest_configure(config: Any) -> None:
    out = os.environ.get("SUITE_CPU_OUT")
    if out:
        config.pluginmanager.register(Plugin(out), "suite-cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--top", type=int, default=20, help="Files and tests to list.")
    a, rest = ap.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="suite-cpu-") as out:
        env = {**os.environ, "SUITE_CPU_OUT": out,
               "PYTHONPATH": os.pathsep.join(x for x in (str(Path(__file__).parent), os.environ.get("PYTHONPATH"))
                                             if x)}
        t0, c0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "suite_cpu", *rest],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        wall, c1 = time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        tests: dict[str, list[float]] = {}
        for f in Path(out).glob("*.json"):
            tests.update(json.loads(f.read_text()))
    last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    print(f"suite: {last}")
    in_tests = sum(own + kids for own, kids, _ in tests.values())
    print(f"wall {wall:.1f} s, CPU {cpu:.1f} s (user {c1.ru_utime - c0.ru_utime:.1f} + system "
          f"{c1.ru_stime - c0.ru_stime:.1f}) on {os.cpu_count()} CPUs; in tests {in_tests:.1f} s, the rest is "
          "start-up, collection and servers reaped after their tests")
    files: dict[str, list[float]] = {}
    for node, (own, kids, _) in tests.items():
        f = files.setdefault(node.split("::")[0], [0.0, 0.0, 0])
        f[0] += own
        f[1] += kids
        f[2] += 1
    print(f"\n{'CPU s':>7} {'own':>6} {'children':>8} {'tests':>5}  file")
    for name, (own, kids, n) in sorted(files.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:a.top]:
        print(f"{own + kids:7.2f} {own:6.2f} {kids:8.2f} {n:5d}  {name}")
    print(f"\n{'CPU s':>7} {'wall s':>6}  test")
    for node, (own, kids, w) in sorted(tests.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:a.top]:
        print(f"{own + kids:7.2f} {w:6.2f}  {node[:110]}")
    if r.returncode != 0:
        raise SystemExit(r.returncode)


if __name__ == "__main__":
    main()
