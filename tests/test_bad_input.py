"""Bad input to the `agent-router` command: deeply nested JSON, lone surrogates, invalid UTF-8,
huge wrong values, /dev/zero, directories, a 2 GB file and unreadable files as settings, stdin or JSONL rows.
Each gives exit status 2 and exactly one line on stderr that names the file and place, never a traceback.

The command runs in this process (click's runner: its exit status, stdout and stderr); the last tests run the real
`agent-router` process for what only a process shows (bytes on a real stdin, the exit status the shell sees)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_router.cli import cli as agent_router
from agent_router.errors import SettingsError
from agent_router.settings import load

DEEP = "[" * 100_000
DEEP_OBJ = '{"a": ' * 100_000


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # Not PYTEST_CURRENT_TEST: pytest 8 and 9.0 put the whole (megabyte) parameter there, too long for exec.
    e = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_ROUTER") and k != "PYTEST_CURRENT_TEST"}
    return {**e, "HOME": str(home), "AGENT_ROUTER_HOME": str(home)}


def cli(env, *args: str, stdin: bytes | None = None, stdin_file: str | None = None) -> tuple[int, str, str]:
    """`agent-router ARGS` in this process, with `env`'s home and settings variables."""
    fh = open(stdin_file, "rb") if stdin_file else None  # noqa: SIM115
    try:
        got = CliRunner().invoke(
            agent_router, list(args), input=fh if fh else stdin,
            env={k: env.get(k) for k in ("HOME", "AGENT_ROUTER_HOME", "AGENT_ROUTER_SETTINGS")},
        )
    finally:
        if fh:
            fh.close()
    # Anything but a clean exit would have printed a traceback from the real command.
    assert got.exception is None or isinstance(got.exception, SystemExit), repr(got.exception)
    return got.exit_code, got.stdout, got.stderr


def process(env, *args: str, stdin: bytes | None = None, stdin_file: str | None = None) -> tuple[int, str, str]:
    """The real `agent-router ARGS` process."""
    fh = open(stdin_file, "rb") if stdin_file else None  # noqa: SIM115
    try:
        p = subprocess.run(
            [sys.executable, "-m", "agent_router", *args], input=stdin, stdin=fh, capture_output=True, env=env,
            timeout=120,
        )
    finally:
        if fh:
            fh.close()
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def one_line_error(rc: int, err: str, *needles: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err[:2000]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def write(tmp_path: Path, name: str, data: str | bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return str(p)


# --- settings files -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, needles",
    [
        (DEEP, ["deep.json", "nested deeper than 100 levels"]),
        (DEEP_OBJ, ["deep.json", "nested deeper than 100 levels"]),
        # Deep enough to be refused, shallow enough for Python's parser: the JSON path is named.
        ('{"routing": ' + "[" * 150 + "]" * 150 + "}", ["nested deeper than 100 levels at $.routing[0][0]"]),
        ('{"ledger": {"path": "a\\ud800b"}}', ["string at $.ledger.path holds a lone surrogate"]),
        ('{"ledger": {"\\udfff": 1}}', ["key at $.ledger.\\udfff holds a lone surrogate"]),
        (b'{"ledger": {"path": "\xff\xfe"}}', ["not valid UTF-8 (byte 21"]),
        ('{"budgets": {"daily_usd": ' + "1" * 5000 + "}}", ["invalid JSON", "4300 digits"]),
        ("{nope", ["invalid JSON at line 1 column 2"]),
    ],
)
def test_bad_settings_file_is_one_line(tmp_path, env, content, needles):
    path = write(tmp_path, "deep.json", content)
    rc, _, err = cli(env, "route", "--settings", path, "hi")
    one_line_error(rc, err, path, "invalid settings", *needles)
    # The same file named by $AGENT_ROUTER_SETTINGS, and through the Python API: a SettingsError.
    rc, _, err = cli({**env, "AGENT_ROUTER_SETTINGS": path}, "check")
    one_line_error(rc, err, *needles)
    with pytest.raises(SettingsError):
        load(path)


def test_huge_wrong_value_is_echoed_truncated(tmp_path, env):
    path = write(tmp_path, "s.json", json.dumps({"routing": "x" * 5000}))
    rc, _, err = cli(env, "route", "--settings", path, "hi")
    line = one_line_error(rc, err, "at $.routing", "'" + "x" * 79 + "…(5,002 chars)")
    assert len(line) < 400
    path = write(tmp_path, "k.json", json.dumps({"y" * 100_000: 1}))
    rc, _, err = cli(env, "route", "--settings", path, "hi")
    line = one_line_error(rc, err, "unknown key", "…(100,000 chars)")
    assert len(line) < 400


def test_thousands_of_problems_are_listed_briefly(tmp_path):
    path = write(tmp_path, "many.json", json.dumps({f"k{i}": 1 for i in range(5000)}))
    with pytest.raises(SettingsError) as ei:
        load(path)
    assert len(ei.value.problems) == 5000
    assert str(ei.value).count("\n") == 21 and "and 4980 more problems" in str(ei.value)


@pytest.mark.parametrize("which", ["dev_zero", "directory", "two_gb", "proc_mem", "no_permission", "missing"])
def test_settings_path_that_is_not_a_readable_settings_file(tmp_path, env, which):
    if which == "dev_zero":
        path, needle = "/dev/zero", "larger than 10,485,760 bytes"
    elif which == "directory":
        path, needle = str(tmp_path), "is a directory"
    elif which == "two_gb":
        path, needle = str(tmp_path / "big.json"), "larger than 10,485,760 bytes"
        with open(path, "wb") as f:
            f.truncate(2 * 1024**3)  # sparse: 2 GB long, no disk used
    elif which == "proc_mem":  # a file every user, root too, fails to read (EIO)
        if not Path("/proc/self/mem").exists():
            pytest.skip("no /proc")
        path, needle = "/proc/self/mem", "cannot read"
    elif which == "no_permission":
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        path, needle = write(tmp_path, "locked.json", "{}"), "permission denied"
        os.chmod(path, 0)
    else:
        path, needle = str(tmp_path / "nope.json"), "file not found"
    rc, _, err = cli(env, "route", "--settings", path, "hi")
    one_line_error(rc, err, path, needle)


# --- messages on stdin ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stdin, needles",
    [
        (DEEP.encode(), ["stdin: JSON nested deeper than 100 levels"]),
        (DEEP_OBJ.encode(), ["stdin: JSON nested deeper than 100 levels"]),
        (b'[{"role": "user", "content": "hi \\ud800 there"}]', ["stdin: string at $[0].content holds a lone"]),
        (b'[{"role": "user", "content": "hi \\udc00\\ud800"}]', ["stdin: string at $[0].content holds a lone"]),
        (b'[{"role": "user", "content": [{"type": "text", "text": ' + b"[" * 200 + b"]" * 200 + b"}]}]",
         ["nested deeper than 100 levels at $[0].content[0].text"]),
    ],
)
def test_bad_stdin_messages_are_one_line(env, stdin, needles):
    rc, _, err = cli(env, "route", stdin=stdin)
    one_line_error(rc, err, *needles)


# The cases below run in-process and as the real process too: real stdin bytes, /dev/zero, the exit status.
BOTH = pytest.mark.parametrize("run", [cli, process], ids=["in-process", "real process"])


@BOTH
def test_bad_utf8_on_stdin_is_one_line(env, run):
    rc, _, err = run(env, "route", stdin=b'[{"role": "user", "content": "caf\xe9"}]')
    one_line_error(rc, err, "stdin: not valid UTF-8 (byte 33")


@BOTH
def test_paired_surrogate_escapes_are_ordinary_text(env, run):
    rc, out, err = run(env, "route", "--json", stdin=b'[{"role": "user", "content": "launch \\ud83d\\ude80 now"}]')
    assert rc == 0, err
    assert json.loads(out)["tier"] == "utility"


@BOTH
def test_endless_stdin_is_refused_not_read_whole(env, run):
    rc, _, err = run(env, "route", stdin_file="/dev/zero")
    one_line_error(rc, err, "stdin: larger than 80,000,000 bytes")


# --- JSONL rows for score / eval ----------------------------------------------------------------------------
GOOD_ROW = json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize(
    "bad, needles",
    [
        (DEEP, [":2: JSON nested deeper than 100 levels"]),
        ('{"id": "b", "messages": [{"role": "user", "content": "x\\ud800"}]}',
         [":2: string at $.messages[0].content holds a lone surrogate"]),
        ('{"id": "b", "messages": [{"role": "user", "content": "caf\xe9"}]}'.encode("latin-1"),
         [":2: not valid UTF-8"]),
    ],
)
@pytest.mark.parametrize("command", ["score", "eval"])
def test_bad_jsonl_rows_are_one_line(tmp_path, env, command, bad, needles):
    tail = bad if isinstance(bad, bytes) else bad.encode()
    path = write(tmp_path, "rows.jsonl", GOOD_ROW.encode() + b"\n" + tail + b"\n")
    extra = ["--models", "gpt-4.1-nano,gpt-4.1"] if command == "eval" else []
    rc, _, err = cli(env, command, path, *extra)
    one_line_error(rc, err, path, *needles)


@BOTH
def test_endless_rows_file_is_refused_not_read_whole(env, run):
    rc, _, err = run(env, "score", "/dev/zero")
    one_line_error(rc, err, "/dev/zero:1: line longer than 80,000,000 bytes")


# --- the real process -----------------------------------------------------------------------------------------
def test_real_command_bad_settings_file_and_variable_are_one_line(tmp_path, env):
    path = write(tmp_path, "deep.json", DEEP)
    rc, _, err = process(env, "route", "--settings", path, "hi")
    one_line_error(rc, err, path, "invalid settings", "nested deeper than 100 levels")
    rc, _, err = process({**env, "AGENT_ROUTER_SETTINGS": path}, "check")
    one_line_error(rc, err, "nested deeper than 100 levels")
