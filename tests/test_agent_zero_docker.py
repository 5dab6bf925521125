"""Agent Zero as its Docker users run it, built without Docker.

- `/a0` is a fresh Agent Zero v1.7 tree (an archive of its repository at tag v1.7);
- `/opt/venv-a0` is a venv holding Agent Zero's own pinned requirements (the light part: what a loop turn and
  the UI server import; torch, browsers, OCR and packages that need a Rust toolchain are left out, their
  imports stubbed), on Python 3.12 as in the image;
- Agent Zero's UI server (`run_ui.py`, the process its image runs) is driven over HTTP as its web UI drives it:
  the plugin's zip uploaded to the Plugins UI's install endpoint (its installer, which runs `hooks.install()`),
  chat messages, the plugin's settings saved, the log read from the poll the UI makes, the costs page in
  headless Chromium;
- a turn runs Agent Zero's real loop with LiteLLM mock replies and no network (`unshare -n` when available: the
  UI server in a network namespace holding only a loopback, which the test's requests and Chromium join); the
  plugin is installed while its pip finds no packages (an empty index folder: no network at install), then the
  Plugins UI's Execute runs its `execute.py` once the folder holds them; the second test's turn runs in a script
  process of its own (a fresh start on a rebuilt venv);
- "container rebuild": the venv is replaced by a fresh copy built from the pins alone; `usr/` stays.

The Agent Zero source comes from `$AGENT_ZERO_SRC` (a git repository with tag v1.7, or a v1.7 tree) or from a
mirror `.mirror/agent0ai+agent-zero*/repo` next to one of this repository's parent folders; without one, or
without Python 3.12, the tests skip saying so. Venvs are built once under `$AGENT_ROUTER_TEST_CACHE` (default
`~/.cache/agent-router-tests`) and reused while Agent Zero's requirements stay the same; so are the v1.7 tree with
its modules compiled (each run copies it: Agent Zero's image, like this copy, writes bytecode) and the packages the
plugin's installer adds (a local folder its pip reads instead of PyPI, so that every step runs without network).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .cached import built_once, cache_dir
from .scale_fixtures import free_port

REPO = Path(__file__).resolve().parents[1]
# What a loop turn and the UI server import, by Agent Zero's requirement names; the pins come from its files.
LIGHT = {
    "pydantic", "tiktoken", "litellm", "openai", "langchain-core", "langchain-community", "flask",
    "flask-basicauth", "python-dotenv", "nest-asyncio", "gitpython", "giturlparse", "simpleeval", "pytz",
    "markdown", "crontab", "pathspec", "psutil", "python-socketio", "uvicorn", "watchdog", "wsproto", "a2wsgi",
    "webcolors", "mcp", "fastmcp", "fasta2a", "html2text", "beautifulsoup4", "markdownify", "inputimeout",
    "flaredantic", "docker", "chardet", "soundfile",
}
STUBS = {  # imported at top level by models.py and helpers/whisper.py; unused by a chat turn
    "sentence_transformers.py": "class SentenceTransformer:\n    def __init__(self, *a, **k):\n"
    "        raise RuntimeError('stub: sentence-transformers is not installed in this test venv')\n",
    "whisper.py": "def load_model(*a, **k):\n    raise RuntimeError('stub: openai-whisper is not installed')\n",
}


# -- locating Agent Zero and Python 3.12 ----------------------------------------------------------------------
def a0_source() -> Path | None:
    env = os.environ.get("AGENT_ZERO_SRC")
    if env:
        return Path(env)
    for parent in REPO.parents:
        for cand in sorted(parent.glob(".mirror/agent0ai+agent-zero*/repo")):
            return cand
    return None


def python312() -> str | None:
    """A working Python 3.12 (PATH, then pyenv's versions), as its real executable (a pyenv shim may not run)."""
    cands = [shutil.which("python3.12")]
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        root = ""
    if root:
        cands += [str(p) for p in sorted(Path(root).glob("versions/3.12*/bin/python3.12"), reverse=True)]
    for c in filter(None, cands):
        try:
            got = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2] == (3, 12), sys.executable)"],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        ok, _, exe = got.stdout.strip().partition(" ")
        if got.returncode == 0 and ok == "True":
            return exe
    return None


def extract_v17(src: Path, dest: Path) -> None:
    """A fresh v1.7 tree at `dest` from a git repository (bare or not) or a tree."""
    dest.mkdir(parents=True)
    if (src / "run_ui.py").is_file():
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
        return
    arc = subprocess.run(["git", "-C", str(src), "archive", "v1.7"], capture_output=True, timeout=300, check=True)
    tar = dest.parent / "a0-v1.7.tar"
    tar.write_bytes(arc.stdout)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()


def _tree_key(src: Path) -> str:
    """What identifies the v1.7 tree in `src`: the tag's git tree id, or the paths, sizes and times of a tree."""
    if (src / "run_ui.py").is_file():
        h = hashlib.sha256()
        for p in sorted(src.rglob("*")):
            if p.is_file() and ".git" not in p.relative_to(src).parts:
                st = p.stat()
                h.update(f"{p.relative_to(src)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()
    got = subprocess.run(["git", "-C", str(src), "rev-parse", "v1.7^{tree}"], capture_output=True, text=True,
                         timeout=60, check=True)
    return got.stdout.strip()


def _link_pyc_or_copy(src: str, dst: str) -> None:
    """Compiled modules are hard links (Python replaces a stale .pyc, never writes into one); the rest, which
    Agent Zero may write to, are copies."""
    if src.endswith(".pyc"):
        _link_or_copy(src, dst)
    else:
        shutil.copy2(src, dst)  # keeps the times the .pyc files were compiled against


def a0_tree(src: Path, py: str, dest: Path) -> None:
    """A fresh v1.7 tree at `dest` whose modules are already compiled by `py`: a copy of a tree extracted and
    compiled once per source and Python (locked across processes). Every Agent Zero start in these tests then
    loads Agent Zero's modules as its image does after the first start, instead of compiling them again."""
    key = hashlib.sha256(f"{_tree_key(src)}\0{py}".encode()).hexdigest()[:16]

    def build(tmp: Path) -> None:
        extract_v17(src, tmp / "a0")
        subprocess.run([py, "-m", "compileall", "-q", "-j0", str(tmp / "a0")], check=True, capture_output=True,
                       timeout=600)

    cached = built_once(f"a0-tree-{key}", build)
    shutil.copytree(cached / "a0", dest, symlinks=True, copy_function=_link_pyc_or_copy)


def light_requirements(tree: Path) -> list[str]:
    """Agent Zero's requirement lines for LIGHT, requirements2.txt overriding requirements.txt (as its
    install script installs it after)."""
    reqs: dict[str, str] = {}
    for name in ("requirements.txt", "requirements2.txt"):
        for line in (tree / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            m = re.match(r"^([A-Za-z0-9_.-]+)", line)
            if m and m.group(1).lower() in LIGHT:
                reqs[m.group(1).lower()] = line
    return [reqs[k] for k in sorted(reqs)]


def pristine_venv(tree: Path, py: str) -> Path:
    """The venv of Agent Zero's pins, built once per requirements and Python (locked across processes)."""
    reqs = light_requirements(tree)
    key = hashlib.sha256(("\n".join(reqs) + py).encode()).hexdigest()[:16]

    def build(tmp: Path) -> None:  # renamed when built: its scripts name the old path; all here runs `-m`
        subprocess.run([py, "-m", "venv", str(tmp)], check=True, timeout=300)
        (tmp / "requirements.txt").write_text("\n".join(reqs) + "\n")
        got = subprocess.run(
            [str(tmp / "bin/python"), "-m", "pip", "install", "-q", "-r", str(tmp / "requirements.txt")],
            capture_output=True, text=True, timeout=1800,
        )
        if got.returncode != 0:
            raise RuntimeError(f"building Agent Zero's venv failed: {got.stderr[-2000:]}")

    return built_once(f"a0-venv-{key}", build)


def agent_router_wheel() -> Path:
    """A wheel of this checkout, built once per source state."""
    files = sorted(p for p in (REPO / "agent_router").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    h = hashlib.sha256((REPO / "pyproject.toml").read_bytes())
    for p in files:
        h.update(str(p.relative_to(REPO)).encode() + p.read_bytes())
    out = cache_dir() / f"wheel-{h.hexdigest()[:16]}"
    with open(cache_dir() / "wheel.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(out.glob("agent_router-*.whl"))
        if found:
            return found[0]
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
            check=True, capture_output=True, timeout=600,
        )
        return sorted(out.glob("agent_router-*.whl"))[0]


def _requires(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist lines."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode("utf-8")
    return sorted(ln for ln in text.splitlines() if ln.startswith("Requires-Dist:"))


def plugin_wheelhouse(d: Docker, wheel: Path) -> Path:
    """The packages the plugin's installer adds to Agent Zero's venv, in a folder: what pip resolves for the
    wheel against the framework's pins (as `hooks.install()` resolves it), downloaded once per (agent_router's
    requirements, Agent Zero's pins) from the package index this machine's pip is configured with. The tests'
    installs read this folder as their index (`Docker.env`), as a user's private mirror would be read."""
    key = hashlib.sha256("\n".join([*_requires(wheel), *pins(d.pristine), str(d.pristine)]).encode()).hexdigest()

    def build(tmp: Path) -> None:
        tmp.mkdir()
        freeze = subprocess.run(
            [str(d.venv / "bin/python"), "-c", "from importlib import metadata\n"
             "print('\\n'.join(sorted({f\"{x.metadata['Name']}=={x.version}\" for x in metadata.distributions()})))"],
            env=d.env(), capture_output=True, text=True, timeout=120, check=True,
        )
        (tmp / "constraints.txt").write_text(freeze.stdout)
        got = d.pip("install", "--dry-run", "--quiet", "--report", str(tmp / "report.json"),
                    "-c", str(tmp / "constraints.txt"), str(wheel))
        assert got.returncode == 0, got.stderr[-2000:]
        items = [f"{i['metadata']['name']}=={i['metadata']['version']}"
                 for i in json.loads((tmp / "report.json").read_text())["install"]
                 if i["metadata"]["name"] != "agent-router"]
        (tmp / "wheels").mkdir()
        if items:
            got = d.pip("download", "--no-deps", "--quiet", "-d", str(tmp / "wheels"), *items)
            assert got.returncode == 0, got.stderr[-2000:]

    return built_once(f"a0-wheels-{key[:16]}", build)


def _offline_prefix() -> list[str]:
    try:
        ok = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30).returncode == 0
    except OSError:
        ok = False
    return ["unshare", "-n"] if ok else []


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the Docker layout: the run's temporary folder when it is on the cache's file system (the
    venv and the tree are hard links into the cache), else a folder under the cache's `runs/` (a run on a tmpfs,
    tests/conftest.py); the fixture removes it when its tests pass, and a failed run's is removed a day later."""
    base = tmp_path_factory.mktemp("a0-docker")
    if base.stat().st_dev == cache_dir().stat().st_dev:
        return base
    base.rmdir()
    runs = cache_dir() / "runs"
    runs.mkdir(exist_ok=True)
    for old in runs.iterdir():
        with contextlib.suppress(OSError):  # another run's folder, gone meanwhile
            if time.time() - old.stat().st_mtime > 86400:
                shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="a0-docker-", dir=runs))


# -- the Docker layout ---------------------------------------------------------------------------------------
class Docker:
    """`root` as /a0 (the volume), `venv` as /opt/venv-a0."""

    def __init__(self, root: Path, venv: Path, pristine: Path, stubs: Path):
        self.root, self.venv, self.pristine, self.stubs = root, venv, pristine, stubs
        self.offline = _offline_prefix()
        self.wheels: Path | None = None  # the package index pip reads (plugin_wheelhouse); None: pip's own config

    def rebuild_venv(self) -> None:
        """A container rebuild: the framework's venv comes back with Agent Zero's pins alone.

        Its files are hard links to the cached pristine venv's (a copy when they are on different file systems):
        ~26,000 files, 400+ MB, copied in seconds instead of tens of seconds. pip and Python never write into an
        installed file, they replace it (a new inode), so the cached venv is not changed through the links."""
        shutil.rmtree(self.venv, ignore_errors=True)
        shutil.copytree(self.pristine, self.venv, symlinks=True, copy_function=_link_or_copy)

    def env(self, find_links: Path | None = None) -> dict[str, str]:
        """Agent Zero's environment. It writes bytecode, as in its image (PYTHON* variables of the test run are
        dropped). With a wheelhouse, pip reads only that folder (or `find_links`, a folder standing in for it): no
        network, no pip.conf of this machine."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_ROUTER", "PYTHON", "VIRTUAL_ENV"))}
        env.update(PYTHONPATH=str(self.stubs), LITELLM_LOCAL_MODEL_COST_MAP="True")
        if self.wheels is not None:
            links = find_links if find_links is not None else self.wheels / "wheels"
            env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(links), PIP_CONFIG_FILE=os.devnull)
        return env

    def python(self, script: str, *args: str, timeout: int = 600) -> dict:
        """Run `script` with the framework's Python in /a0; its result is its last stdout line `RESULT <json>`."""
        f = self.root / "tmp" / f"test_{hashlib.sha1(script.encode()).hexdigest()[:8]}.py"
        f.parent.mkdir(exist_ok=True)
        f.write_text(script)
        cmd = [*self.offline, str(self.venv / "bin/python"), str(f), *args]
        got = subprocess.run(cmd, cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=timeout)
        lines = [ln for ln in got.stdout.splitlines() if ln.startswith("RESULT ")]
        assert got.returncode == 0 and lines, f"rc={got.returncode}\n{got.stdout[-3000:]}\n{got.stderr[-3000:]}"
        return json.loads(lines[-1][len("RESULT "):])

    def pip(self, *args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess:
        env = self.env()
        if extra_path is not None:
            env["PYTHONPATH"] = str(extra_path)
        return subprocess.run(
            [str(self.venv / "bin/python"), "-m", "pip", "--disable-pip-version-check", *args],
            env=env, capture_output=True, text=True, timeout=600,
        )


@pytest.fixture(scope="module")
def docker(tmp_path_factory, request):
    src = a0_source()
    if src is None or not src.exists():
        pytest.skip("no Agent Zero source: set $AGENT_ZERO_SRC (a git repository with tag v1.7, or a v1.7 tree)")
    py = python312()
    if py is None:
        pytest.skip("no Python 3.12 (Agent Zero v1.x needs it): put python3.12 on PATH or install it with pyenv")
    base = scratch(tmp_path_factory)
    root = base / "a0"
    a0_tree(src, py, root)
    pristine = pristine_venv(root, py)
    stubs = base / "stubs"
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
    d = Docker(root, base / "venv-a0", pristine, stubs)
    d.rebuild_venv()
    d.wheels = plugin_wheelhouse(d, agent_router_wheel())
    failed = request.session.testsfailed
    yield d
    # ~30,000 files (the tree and the venv's hard links): pytest would delete them at the end of a later run, in
    # the process that starts it, after every test. Removed here, beside the other files' tests, when all passed.
    if request.session.testsfailed == failed:
        shutil.rmtree(base, ignore_errors=True)


# -- scripts run inside Agent Zero ---------------------------------------------------------------------------
PRELUDE = r'''
import asyncio, json, os, sys
sys.path.insert(0, os.getcwd())
from helpers import runtime
runtime.args = {"dockerized": True}
from helpers import files
'''

INSTALL = PRELUDE + r'''
from plugins._plugin_installer.helpers.install import install_from_zip
res = install_from_zip(sys.argv[1])
print("\nRESULT " + json.dumps({"result": res}, default=str))
'''


def reply(text: str) -> str:
    return json.dumps({"thoughts": ["done"], "headline": "Answering", "tool_name": "response",
                       "tool_args": {"text": text}})


MODELS = {  # Agent Zero's own model settings (plugins/_model_config), with LiteLLM mock replies
    "allow_chat_override": True,
    "chat_model": {"provider": "openai", "name": "gpt-4.1-mini", "api_key": "sk-mock", "ctx_length": 128000,
                   "ctx_history": 0.7, "kwargs": {"mock_response": reply("Hello from mini")}},
    "utility_model": {"provider": "openai", "name": "gpt-4.1-nano", "api_key": "sk-mock", "ctx_length": 128000,
                      "kwargs": {"mock_response": reply("Hello from nano")}},
    "embedding_model": {"provider": "huggingface", "name": "sentence-transformers/all-MiniLM-L6-v2", "kwargs": {}},
}

TURNS = PRELUDE + r'''
files.write_file(files.get_abs_path("usr/plugins/_memory/.toggle-0"), "")  # memory needs faiss + embeddings
files.write_file(files.get_abs_path("usr/plugins/_model_config/config.json"), sys.argv[1])
import initialize
from agent import AgentContext, AgentContextType, UserMessage
from helpers import plugins

async def main():
    plan = json.loads(sys.argv[2])
    ctx = AgentContext(config=initialize.initialize_agent(), type=AgentContextType.USER)
    out = []
    for step in plan:
        if "config" in step:  # what the Settings UI's save does (api/plugins.py, save_config)
            plugins.save_plugin_config("agent_router", "", "", step["config"])
            continue
        start = len(ctx.log.logs)
        result = await ctx.communicate(UserMessage(message=step["say"])).result()
        items = [{"type": i.type, "heading": i.heading, "content": i.content} for i in ctx.log.logs[start:]]
        out.append({"result": result, "log": items})
    print("\nRESULT " + json.dumps({"context": ctx.id, "turns": out}, default=str))

asyncio.run(main())
sys.stdout.flush()
os._exit(0)  # Agent Zero's background threads (job loop) can abort the interpreter's teardown
'''


def turns(d: Docker, *plan: dict) -> dict:
    return d.python(TURNS, json.dumps(MODELS), json.dumps(list(plan)))


def ledger_rows(d: Docker) -> list[dict]:
    db = d.root / "usr/agent_router/ledger.db"
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM calls ORDER BY id")]
    finally:
        con.close()


def of_type(turn: dict, kind: str) -> list[dict]:
    return [i for i in turn["log"] if i["type"] == kind]


# -- Agent Zero's UI server, driven over HTTP as its web UI drives it -----------------------------------------
def _join_netns(pid: int) -> None:
    """The calling thread joins the network namespace of process `pid` (sockets it opens then live there)."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), f"setns into the network namespace of process {pid}")
    finally:
        os.close(fd)


class UiServer:
    """`run_ui.py --dockerized=true` on 127.0.0.1 (the process Agent Zero's image runs: its UI, its API and the
    agent loop), and a client that calls its API as the web UI's `fetchApi` does: the CSRF token of its session
    (`/api/csrf_token`) in an `X-CSRF-Token` header, JSON or a multipart form POSTed to `/api/<handler>`.

    With `unshare` (and `ip`, `nsenter`), the server runs in a network namespace holding only a loopback: its turns
    have no network. The client's requests are made from one thread that joined that namespace, and Chromium is
    started inside it."""

    def __init__(self, d: Docker, log: Path, find_links: Path | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [str(d.venv / "bin/python"), "run_ui.py", "--dockerized=true", f"--port={self.port}", "--host=127.0.0.1"]
        self.isolated = bool(d.offline) and bool(shutil.which("ip")) and bool(shutil.which("nsenter"))
        if self.isolated:  # sh execs the server: the process started here is the server, in the new namespace
            cmd = [*d.offline, "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
        self._log = open(log, "w")
        self.proc = subprocess.Popen(cmd, cwd=d.root, env=d.env(find_links), stdout=self._log, stderr=subprocess.STDOUT)
        self.pool: ThreadPoolExecutor | None = None
        self.http = httpx.Client(base_url=self.base, timeout=300, headers={"Origin": self.base})
        self.seen: dict[str, int] = {}  # per chat: how many of its log items the earlier turns returned

    def _alive(self, deadline: float) -> None:
        assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()[-3000:]

    def start(self) -> None:
        """Waits (polling) until the server answers, then takes the session's CSRF token as the web UI does."""
        deadline = time.monotonic() + 180
        if self.isolated:  # until `unshare` has made the namespace (then `ip` and the server run in it)
            own = os.stat("/proc/self/ns/net").st_ino
            while os.stat(f"/proc/{self.proc.pid}/ns/net").st_ino == own:
                self._alive(deadline)
                time.sleep(0.01)
        self.pool = ThreadPoolExecutor(1, initializer=_join_netns if self.isolated else None,
                                       initargs=(self.proc.pid,) if self.isolated else ())
        while True:
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                if self._call(self.http.get, "/api/health").status_code == 200:
                    break
            self._alive(deadline)
            time.sleep(0.2)
        got = self._call(self.http.get, "/api/csrf_token").json()
        assert got["ok"], got
        self.http.headers["X-CSRF-Token"] = got["token"]

    def _call(self, fn, *args, **kwargs) -> httpx.Response:
        assert self.pool is not None
        return self.pool.submit(fn, *args, **kwargs).result()

    def api(self, handler: str, **body) -> dict:
        got = self._call(self.http.post, f"/api/{handler}", json=body)
        assert got.status_code == 200, f"/api/{handler}: {got.status_code} {got.text[:2000]}"
        return got.json()

    def install_zip(self, plugin_zip: Path) -> dict:
        """The Plugins UI's "install from ZIP" (plugins/_plugin_installer/webui/pluginInstallStore.js)."""
        got = self._call(self.http.post, "/api/plugins/_plugin_installer/plugin_install",
                         data={"action": "install_zip"},
                         files={"plugin_file": (plugin_zip.name, plugin_zip.read_bytes(), "application/zip")})
        assert got.status_code == 200, got.text[:2000]
        return got.json()

    def new_chat(self, current: str) -> str:
        """The sidebar's "New chat" (webui/components/sidebar/chats/chats-store.js): the new chat's context id."""
        got = self.api("chat_create", current_context=current)
        assert got["ok"], got
        return got["ctxid"]

    def say(self, text: str, context: str = "") -> dict:
        """A chat message (`/api/message` answers with the turn's result), then the turn's log items as the web UI
        reads them (`/api/poll`): {"context", "result", "log": [{"type", "heading", "content"}, ...]}."""
        got = self.api("message", text=text, context=context)
        ctx = got["context"]
        items = sorted(self.api("poll", context=ctx, log_from=0, timezone="UTC")["logs"], key=lambda i: i["no"])
        start, self.seen[ctx] = self.seen.get(ctx, 0), len(items)
        log = [{k: i[k] for k in ("type", "heading", "content")} for i in items[start:]]
        return {"context": ctx, "result": got["message"], "log": log}

    def chromium_dom(self, chromium: str, path: str, profile: Path) -> subprocess.CompletedProcess:
        """The page at `path` as headless Chromium renders it (its scripts run, calling the server's API)."""
        prefix = ["nsenter", f"--net=/proc/{self.proc.pid}/ns/net"] if self.isolated else []
        return subprocess.run(
            [*prefix, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
             f"--user-data-dir={profile}", "--dump-dom", self.base + path],
            capture_output=True, text=True, timeout=120,
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.pool is not None:
                self.pool.shutdown()
            self.http.close()
            self._log.close()


# -- tests ---------------------------------------------------------------------------------------------------
# They build on each other, in this order, on one Agent Zero tree (as a user's volume lives on): an install without
# network, unrouted turns, Execute, routed turns, settings and the costs view through one UI server; then a container
# rebuild. `install_plugin` (the installer in a process of its own) installs when the second runs without the first.
def export_plugin(dest: Path) -> Path:
    """`agent-router export agent-zero-plugin DEST --wheel <this checkout's wheel>`."""
    from click.testing import CliRunner

    from agent_router.cli import cli

    got = CliRunner().invoke(cli, ["export", "agent-zero-plugin", str(dest), "--wheel", str(agent_router_wheel())])
    assert got.exit_code == 0, got.output
    return dest


def pins(venv: Path) -> list[str]:
    """What `pip freeze` lists, read from the venv's metadata: every installed distribution and its version."""
    return sorted(p.name.lower() for p in venv.glob("lib/python3*/site-packages/*.dist-info"))


def install_plugin(d: Docker, tmp_path: Path) -> dict:
    plugin_zip = export_plugin(tmp_path / "agent_router.zip")
    return d.python(INSTALL, str(plugin_zip))["result"]  # pip reads the wheelhouse: no network


def test_docker_ui_install_offline_works_unrouted_execute_routes_settings_and_costs_view(docker, tmp_path):
    """One UI server, as a user's browser drives it: the plugin installed from the Plugins UI while its packages
    cannot be fetched, the agent working unrouted and saying so once, Plugins > agent_router > Execute, a new chat
    routed, the plugin's settings saved from the UI reaching the next turn, and the costs page in headless
    Chromium."""
    d = docker
    pins_before = pins(d.venv)
    assert pins_before == pins(d.pristine) and any(p.startswith("litellm-") for p in pins_before)
    # Agent Zero's own settings, as saved on the volume: mock replies; memory off (it needs faiss + embeddings).
    (d.root / "usr/plugins/_memory").mkdir(parents=True, exist_ok=True)
    (d.root / "usr/plugins/_memory/.toggle-0").write_text("")
    (d.root / "usr/plugins/_model_config").mkdir(parents=True, exist_ok=True)
    (d.root / "usr/plugins/_model_config/config.json").write_text(json.dumps(MODELS))
    plugin_zip = export_plugin(tmp_path / "agent_router.zip")
    # The package index this server's pip reads: empty at install (no network), filled before Execute. A folder
    # of this run's own: the cached wheelhouse is shared by other runs.
    index = d.root.parent / "index"
    index.mkdir()
    ui = UiServer(d, tmp_path / "ui.log", find_links=index)
    try:
        ui.start()
        # Installed by Agent Zero's installer inside the running server (the Plugins UI's upload): the plugin is
        # installed, its packages are not.
        res = ui.install_zip(plugin_zip)
        assert res["success"] and res["plugin_name"] == "agent_router", res
        site = d.root / "usr/agent_router/site"
        assert (d.root / "usr/plugins/agent_router/plugin.yaml").is_file() and not site.exists()
        said = ui.log.read_text()  # the installer's `hooks.install()` says why in the server's log
        assert "agent_router: packages not installed" in said and "No matching distribution" in said, said[-3000:]
        # The agent keeps working unrouted (Agent Zero's chat model) and says so once, naming the cause and the fix.
        unrouted = [ui.say("hi, thanks!")]
        unrouted.append(ui.say("hi again", unrouted[0]["context"]))
        assert [t["result"] for t in unrouted] == ["Hello from mini", "Hello from mini"]
        warnings = [i for t in unrouted for i in of_type(t, "warning")]
        assert len(warnings) == 1 and warnings[0]["heading"].startswith("agent_router is not active"), warnings
        assert "No module named" in warnings[0]["content"] and "execute.py" in warnings[0]["content"]
        assert not any(i["heading"] == "agent_router: cost" for t in unrouted for i in of_type(t, "info"))
        assert not (d.root / "usr/agent_router/ledger.db").exists()  # nothing of agent_router ran: nothing recorded

        # The network is back; the user clicks Plugins (sidebar) > agent_router > Execute
        # (webui/components/plugins/list/plugin-execute-store.js), then starts a new message: routed, a greeting
        # goes to the utility tier (Agent Zero alone would use its chat model).
        for f in (d.wheels / "wheels").iterdir():
            _link_or_copy(str(f), str(index / f.name))
        got = ui.api("plugins", action="run_execute_script", plugin_name="agent_router")
        assert got["ok"] and got["exit_code"] == 0 and "packages in" in got["output"], got
        record = ui.api("plugins", action="get_execute_record", plugin_name="agent_router")["data"]
        assert record == {"executed_at": got["executed_at"], "exit_code": 0}, record
        assert (site / "agent_router").is_dir()
        assert pins(d.venv) == pins_before  # Execute, too, installs nothing into Agent Zero's venv
        chat = ui.new_chat(unrouted[0]["context"])
        assert chat != unrouted[0]["context"]
        first = ui.say("hi, thanks!", chat)
        assert first["context"] == chat
        # The plugin's settings saved from the UI (webui/components/plugins/plugin-settings-store.js) reach the
        # next turn of the same chat: routing off -> the chat tier.
        assert ui.api("plugins", action="save_config", plugin_name="agent_router", project_name="",
                      agent_profile="", settings={"routing_enabled": False}) == {"ok": True}
        second = ui.say("and again", first["context"])
        assert pins(d.venv) == pins_before  # nothing Agent Zero pins was touched (by the installs or the turns)
        assert not (site / "tiktoken").exists() and not (site / "pydantic").exists()  # the framework's are used
        got = d.pip("check", extra_path=site)  # the framework's venv together with the plugin's packages
        assert got.returncode == 0, got.stdout

        assert first["result"] == "Hello from nano"
        assert not of_type(first, "warning") and not of_type(second, "warning")
        (line,) = [i["content"] for i in of_type(first, "info") if i["heading"] == "agent_router: cost"]
        assert re.search(r"this reply \$\d+\.\d{4} \(1 call; answered by the utility tier, gpt-4\.1-nano\) · "
                         r"this chat \$\d+\.\d{4} · saved \$\d+\.\d{4}( \(\d+%\))? against all-premium", line), line
        assert second["result"] == "Hello from mini" and second["context"] == first["context"]
        assert "answered by the chat tier, gpt-4.1-mini" in of_type(second, "info")[-1]["content"]
        rows = ledger_rows(d)
        chats = [r for r in rows if r["kind"] == "chat"]
        # The unrouted turns recorded nothing (no agent_router ran); the routed chat's two turns did.
        assert [r["model"] for r in chats] == ["gpt-4.1-nano", "gpt-4.1-mini"]
        assert {r["conversation_id"] for r in rows} == {first["context"]}
        # The ledger's conversation is Agent Zero's chat, by the id its API gave the web UI.
        assert all(r["conversation_id"] == first["context"] and r["input_tokens"] > 0 for r in chats)
        assert not list(d.root.glob("usr/plugins/agent_router/*.db"))  # the user's data lives outside the plugin

        # The plugin's costs page, served by the same server, in a real browser: its table matches the ledger.
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            pytest.skip("no chromium on PATH: all but the costs page was checked")
        got = ui.chromium_dom(chromium, "/plugins/agent_router/webui/main.html", tmp_path / "chrome")
        dom = got.stdout
        assert 'data-ar="table"' in dom, dom[-3000:] + got.stderr[-2000:]
        table = dom[dom.index('data-ar="table"'):]
        cells = [re.findall(r"<t[dh]>(.*?)</t[dh]>", r) for r in re.findall(r"<tr>(.*?)</tr>", table, re.S)]
        assert cells[0][:2] == ["chat", "calls"]
        total = cells[-1]
        rows = ledger_rows(d)
        assert total[0] == "total" and int(total[1]) >= len([r for r in rows if r["kind"] in ("chat", "utility")])
        assert total[4] == f"${sum(r['cost_usd'] for r in rows):.4f}"
    finally:
        ui.stop()


def test_a_container_rebuild_keeps_the_packages_on_the_volume_and_a_fresh_process_routes(docker, tmp_path):
    """A container rebuild: the venv comes back from Agent Zero's pins alone; usr/ (the volume) stays, and with it
    the plugin's packages and its settings: a fresh Agent Zero process routes, no manual step."""
    d = docker
    if not (d.root / "usr/plugins/agent_router").is_dir():
        assert install_plugin(d, tmp_path)["success"]
    assert (d.root / "usr/agent_router/site/agent_router").is_dir()
    db = d.root / "usr/agent_router/ledger.db"
    chats_before = len([r for r in ledger_rows(d) if r["kind"] == "chat"]) if db.is_file() else 0
    d.rebuild_venv()
    # Routing switched back on from the UI (the first test switched it off), then a greeting: the utility tier.
    out = turns(d, {"config": {"routing_enabled": True}}, {"say": "hi, thanks!"})
    assert out["turns"][0]["result"] == "Hello from nano"
    assert of_type(out["turns"][0], "info")[-1]["heading"] == "agent_router: cost"
    assert not of_type(out["turns"][0], "warning")
    assert pins(d.venv) == pins(d.pristine)  # the routed turn installed nothing into the framework's venv
    rows = [r for r in ledger_rows(d) if r["kind"] == "chat"]
    assert len(rows) == chats_before + 1 and rows[-1]["conversation_id"] == out["context"]
