"""Our Agent Zero plugin files, installed into a fake checkout and loaded the way Agent Zero loads them.

The loader below follows Agent Zero's source (v1.7 helpers/modules.py `load_classes_from_folder` /
`load_classes_from_file` and helpers/extension.py `_get_extension_classes` / `call_extensions_async`; v0.9.8.2
python/helpers/extension.py `call_extensions`; agent.py `get_tool`, `validate_tool_request`,
`call_chat_model`, `call_utility_model`): a folder per extension point, files sorted by name, each imported by
path, the last subclass of the base class found in a module taken (one per file), the first file of a given
name winning across folders, `cls(agent=agent).execute(**kwargs)` awaited when it returns an awaitable.
The base classes come from tests/a0_standins, put on sys.path for these tests only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import inspect
import json
import os
import re
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from agent_router.hosts import install as inst
from agent_router.runtime import core as rtmod

from .host_fixtures import rows

STANDINS = Path(__file__).parent / "a0_standins"
POINTS = (
    "message_loop_start",
    "message_loop_prompts_after",
    "before_main_llm_call",
    "chat_model_call_before",
    "chat_model_call_after",
    "util_model_call_before",
    "util_model_call_after",
    "message_loop_end",
    "tool_execute_after",
)


# -- a faithful loader ------------------------------------------------------------------------------------
def import_module(file_path: str):
    module_name = os.path.basename(file_path).replace(".py", "")
    spec = importlib.util.spec_from_file_location(module_name, file_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_classes_from_file(file: str, base_class: type) -> list[type]:
    classes = []
    module = import_module(file)
    for _name, cls in reversed(inspect.getmembers(module, inspect.isclass)):
        if cls is not base_class and issubclass(cls, base_class):
            classes.append(cls)
            break
    return classes


def load_classes_from_folder(folder: str, base_class: type) -> list[type]:
    classes = []
    for file_name in sorted(f for f in os.listdir(folder) if fnmatch(f, "*") and f.endswith(".py")):
        classes += load_classes_from_file(os.path.join(folder, file_name), base_class)
    return classes


class Loader:
    """Extension points and tools from a list of roots, in priority order (as subagents.get_paths gives)."""

    def __init__(self, ext_roots: list[Path], tool_roots: list[Path], base_ext: type, base_tool: type):
        self.ext_roots, self.tool_roots = ext_roots, tool_roots
        self.base_ext, self.base_tool = base_ext, base_tool

    def extension_classes(self, point: str) -> list[type]:
        all_exts = [
            cls
            for root in self.ext_roots
            if (root / point).is_dir()
            for cls in load_classes_from_folder(str(root / point), self.base_ext)
        ]
        unique: dict[str, type] = {}
        for cls in all_exts:  # first occurrence of a file name wins
            unique.setdefault(cls.__module__.split(".")[-1], cls)
        return sorted(unique.values(), key=lambda c: c.__module__.split(".")[-1])

    async def call(self, point: str, agent: Any, **kwargs: Any) -> None:
        for cls in self.extension_classes(point):
            result = cls(agent=agent).execute(**kwargs)
            if inspect.isawaitable(result):
                await result

    def get_tool(self, agent: Any, name: str, args: dict, message: str, loop_data: Any):
        for root in self.tool_roots:
            path = root / f"{name}.py"
            if path.is_file():
                (cls,) = load_classes_from_file(str(path), self.base_tool)
                return cls(
                    agent=agent, name=name, method=None, args=args, message=message, loop_data=loop_data
                )
        raise LookupError(name)


def validate_tool_request(tool_request: Any) -> None:
    """agent.py validate_tool_request: a tool_name string and a non-empty tool_args dict."""
    if not isinstance(tool_request, dict):
        raise ValueError("Tool request must be a dictionary")
    if not tool_request.get("tool_name") or not isinstance(tool_request.get("tool_name"), str):
        raise ValueError("Tool request must have a tool_name (type string) field")
    if not tool_request.get("tool_args") or not isinstance(tool_request.get("tool_args"), dict):
        raise ValueError("Tool request must have a tool_args (type dictionary) field")


# -- a host shaped like Agent Zero's objects ----------------------------------------------------------------
class Msg:  # a LangChain BaseMessage as far as we read it
    def __init__(self, type_: str, content: Any):
        self.type, self.content = type_, content


class LoopData:
    def __init__(self, **kw: Any):
        self.iteration, self.system, self.user_message, self.history_output = -1, [], None, []
        self.extras_temporary, self.extras_persistent, self.last_response = {}, {}, ""
        self.params_temporary, self.params_persistent, self.current_tool = {}, {}, None
        self.__dict__.update(kw)


class History:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def output(self) -> list[dict[str, Any]]:
        return list(self.items)


class Context:
    def __init__(self, cid: str):
        self.id = cid


class AgentV1:
    """Agent Zero v1.x: the chat model comes from get_chat_model(); calls fire *_call_before/after."""

    def __init__(self, loader: Loader, models: Any):
        self.loader, self.models = loader, models
        self.context, self.history, self.data = Context("ctx-v1"), History(), {}
        self.loop_data = LoopData()
        self.subordinate: AgentV1 | None = None

    def get_chat_model(self):
        return self.models.get_chat_model("openai", "host-default", mock_response="from the host's own model")

    get_utility_model = get_chat_model

    async def call_chat_model(self, messages: list[Msg]) -> tuple[str, str]:
        call_data = {
            "model": self.get_chat_model(),
            "messages": messages,
            "response_callback": None,
            "reasoning_callback": None,
            "background": False,
            "explicit_caching": True,
        }
        await self.loader.call("chat_model_call_before", self, call_data=call_data)
        response, reasoning = await call_data["model"].unified_call(messages=call_data["messages"])
        await self.loader.call(
            "chat_model_call_after", self, call_data=call_data, response=response, reasoning=reasoning
        )
        return response, reasoning

    async def call_utility_model(self, system: str, message: str, callback=None, background=False) -> str:
        call_data = {
            "model": self.get_utility_model(),
            "system": system,
            "message": message,
            "callback": callback,
            "background": background,
        }
        await self.loader.call("util_model_call_before", self, call_data=call_data)
        response, _ = await call_data["model"].unified_call(system_message=system, user_message=message)
        await self.loader.call("util_model_call_after", self, call_data=call_data, response=response)
        return response

    async def iteration(self, user_text: str | None = None) -> str:
        """One message-loop iteration as Agent.monologue runs it."""
        if user_text is not None:
            self.history.items.append({"ai": False, "content": {"user_message": user_text}})
        ld = self.loop_data
        ld.iteration += 1
        ld.params_temporary = {}
        await self.loader.call("message_loop_start", self, loop_data=ld)
        ld.system = ["You are Agent Zero."]
        ld.history_output = self.history.output()
        await self.loader.call("message_loop_prompts_after", self, loop_data=ld)
        await self.loader.call("before_main_llm_call", self, loop_data=ld)
        prompt = [Msg("system", "\n\n".join(ld.system))]
        prompt += [Msg("ai" if m["ai"] else "human", m["content"]) for m in ld.history_output]
        response, _ = await self.call_chat_model(prompt)
        ld.last_response = response
        self.history.items.append({"ai": True, "content": response})
        if self.subordinate is not None:  # process_tools -> call_subordinate: its whole loop runs here
            await self.subordinate.iteration("You are agent 1; say hello.")
        await self.loader.call("message_loop_end", self, loop_data=ld)
        return response

    async def run_tool(self, request: dict[str, Any]) -> str:
        validate_tool_request(request)
        tool = self.loader.get_tool(
            self, request["tool_name"], request["tool_args"], json.dumps(request), self.loop_data
        )
        # As helpers/tool execution runs it: tool_execute_before, execute, tool_execute_after(response, tool_name).
        await self.loader.call("tool_execute_before", self, tool_args=request["tool_args"], tool_name=tool.name)
        response = await tool.execute(**request["tool_args"])
        await self.loader.call("tool_execute_after", self, response=response, tool_name=tool.name)
        self.history.items.append(
            {"ai": False, "content": {"tool_name": tool.name, "tool_result": response.message}}
        )
        return response.message


@dataclasses.dataclass
class AgentConfigV09:
    chat_model: Any
    utility_model: Any
    profile: str = ""


class AgentV09(AgentV1):
    """Agent Zero v0.9.x: the chat model is built from self.config; no chat_model_call_* points."""

    def __init__(self, loader: Loader, models: Any, config: AgentConfigV09):
        super().__init__(loader, models)
        self.context = Context("ctx-v09")
        self.config = config

    async def call_extensions(self, extension_point: str, **kwargs: Any) -> None:  # marks the legacy Agent
        await self.loader.call(extension_point, self, **kwargs)

    def get_chat_model(self):
        c = self.config.chat_model
        return self.models.get_chat_model(c.provider, c.name, model_config=c, **c.build_kwargs())

    async def call_chat_model(self, messages: list[Msg]) -> tuple[str, str]:
        return await self.get_chat_model().unified_call(messages=messages)

    def get_utility_model(self):
        c = self.config.utility_model
        return self.models.get_chat_model(c.provider, c.name, model_config=c, **c.build_kwargs())

    async def call_utility_model(self, system: str, message: str, callback=None, background=False) -> str:
        call_data = {
            "model": self.get_utility_model(),
            "system": system,
            "message": message,
            "callback": callback,
            "background": background,
        }
        await self.loader.call("util_model_call_before", self, call_data=call_data)  # no *_after in v0.9
        response, _ = await call_data["model"].unified_call(system_message=system, user_message=message)
        return response


# -- fixtures -----------------------------------------------------------------------------------------------
def _settings_file(tmp_path: Path) -> Path:
    def model(name: str, answer: str) -> dict[str, Any]:
        # host_kwargs reach Agent Zero's model constructor: LiteLLM's mock_response answers offline
        return {"provider": "openai", "name": name, "host_kwargs": {"mock_response": answer}}

    data = {
        "models": {
            "nano": model(
                "gpt-4.1-nano", '{"tool_name": "response", "tool_args": {"text": "nano answered"}}'
            ),
            "mini": model(
                "gpt-4.1-mini", '{"tool_name": "response", "tool_args": {"text": "mini answered"}}'
            ),
            "sonnet": model("claude-sonnet-4-5", "sonnet answered"),
        },
        "tiers": {"utility": ["nano"], "chat": ["mini"], "premium": ["sonnet"]},
        "routing": {"utility_max_tier": "utility"},
        "ledger": {"path": str(tmp_path / "ledger.db")},
        # These tests follow the heuristic's tiers for their scripted turns: pinned.
        "learned": {"enabled": False},
    }
    p = tmp_path / "settings.json"
    p.write_text(json.dumps(data))
    return p


def _a0_modules() -> list[str]:
    return [
        n
        for n in sys.modules
        if n in ("models", "helpers", "python") or n.startswith(("helpers.", "python."))
    ]


def _a0_imports(monkeypatch, layout: str):
    """Agent Zero's module names importable from the stand-ins, for one test only; as in a real checkout,
    v1.x has `helpers` and no `python` package, v0.9.x the other way round. Modules of those names loaded
    before (by anything else) are set aside and put back afterwards."""
    saved = {n: sys.modules.pop(n) for n in _a0_modules()}
    monkeypatch.syspath_prepend(str(STANDINS / "common"))
    monkeypatch.syspath_prepend(str(STANDINS / layout))
    yield
    for name in _a0_modules():
        del sys.modules[name]
    sys.modules.update(saved)
    rtmod.activate(None)


@pytest.fixture
def a0_imports(monkeypatch):
    yield from _a0_imports(monkeypatch, "v1")


@pytest.fixture
def a0_legacy_imports(monkeypatch):
    yield from _a0_imports(monkeypatch, "v09")


def _checkout(tmp_path: Path, layout: str) -> Path:
    root = tmp_path / f"agent-zero-{layout}"
    marker = root / ("helpers" if layout == "v1" else "python/helpers") / "extension.py"
    marker.parent.mkdir(parents=True)
    marker.write_text("# Agent Zero's own file (placeholder for detection)\n")
    return root


# -- tests --------------------------------------------------------------------------------------------------
def test_each_point_file_holds_one_extension_that_forwards_and_awaits(tmp_path, a0_imports):
    from helpers.extension import Extension
    from helpers.tool import Tool

    root = _checkout(tmp_path, "v1")
    inst.install(root, str(_settings_file(tmp_path)))
    plugin = root / "usr/plugins/agent_router"
    loader = Loader([plugin / "extensions/python"], [plugin / "tools"], Extension, Tool)
    for point in POINTS:
        (cls,) = loader.extension_classes(point)
        assert (
            cls.__module__.startswith("_") and "agent_router" in cls.__module__
        )  # unique, ordered file name
        assert inspect.iscoroutinefunction(cls.execute)  # v0.9 awaits every execute
        src = Path(cls.execute.__code__.co_filename).read_text()
        assert f'forward("{point}", self, __file__, **kwargs)' in src
    tool = loader.get_tool(object(), "switch_model", {"tier": "chat"}, "", None)
    assert type(tool).__name__ == "SwitchModel" and inspect.iscoroutinefunction(tool.execute)


def test_the_prompt_teaches_a_call_agent_zero_accepts(tmp_path):
    text = (
        Path(inst.__file__).parent / "agent_zero_plugin/prompts/agent.system.tool.switch_model.md"
    ).read_text()
    assert text.startswith("### switch_model\n")
    example = json.loads(re.search(r"~~~json\n(.*?)~~~", text, re.S).group(1))
    validate_tool_request(example)  # non-empty tool_args
    assert example["tool_name"] == "switch_model" and example["tool_args"]["reason"]
    with pytest.raises(ValueError, match="tool_args"):
        validate_tool_request({"tool_name": "switch_model", "tool_args": {}})


def test_v1_loop_routes_swaps_models_records_every_call_and_runs_the_tool(tmp_path, a0_imports):
    import models
    from helpers.extension import Extension
    from helpers.tool import Tool

    root = _checkout(tmp_path, "v1")
    inst.install(root, str(_settings_file(tmp_path)))
    plugin = root / "usr/plugins/agent_router"
    agent = AgentV1(Loader([plugin / "extensions/python"], [plugin / "tools"], Extension, Tool), models)

    async def session() -> list[str]:
        out = [await agent.iteration("hi, thanks!")]  # simple -> utility tier (nano's mock answers)
        out.append(await agent.call_utility_model("Summarize.", "a long text " * 50))
        out.append(
            await agent.run_tool(
                {
                    "tool_name": "switch_model",
                    "tool_args": {"tier": "premium", "reason": "most expensive please"},
                }
            )
        )
        out.append(
            await agent.run_tool(
                {"tool_name": "switch_model", "tool_args": {"tier": "chat", "reason": "careful wording"}}
            )
        )
        out.append(await agent.iteration())  # next step: the agent's switch applies
        out.append(await agent.iteration("ok thanks"))  # next_turn is used up: routing again
        return out

    out = asyncio.run(session())
    assert "nano answered" in out[0]
    assert "nano answered" in out[1]  # utility call swapped too (never the host's own model)
    assert out[2].startswith("Switch refused: the premium tier is above chat")
    assert out[3] == "Switched to the chat tier for the next turn."
    assert "mini answered" in out[4]
    assert "nano answered" in out[5]
    got = rows(tmp_path / "ledger.db")
    assert [(r["kind"], r["model"]) for r in got] == [
        ("chat", "gpt-4.1-nano"),
        ("utility", "gpt-4.1-nano"),
        ("tool", "switch_model"),
        ("tool", "switch_model"),
        ("chat", "gpt-4.1-mini"),
        ("chat", "gpt-4.1-nano"),
    ]
    calls = [r for r in got if r["kind"] != "tool"]
    assert all(r["token_source"] in ("counted", "estimated") and r["input_tokens"] > 0 for r in calls)
    assert all(r["conversation_id"] == "ctx-v1" for r in got)
    assert "override: tier chat (agent: careful wording)" in json.loads(got[4]["reasons"])


def test_v09_layout_swaps_the_model_on_a_copy_of_the_config(tmp_path, a0_legacy_imports):
    import models
    from python.helpers.extension import Extension
    from python.helpers.tool import Tool

    root = _checkout(tmp_path, "legacy")
    res = inst.install(root, str(_settings_file(tmp_path)))
    assert res.layout == "legacy" and not (root / "usr/plugins").exists()
    loader = Loader([root / "usr/extensions"], [root / "usr/tools"], Extension, Tool)
    original = AgentConfigV09(
        chat_model=models.ModelConfig(
            models.ModelType.CHAT,
            "openai",
            "host-default",
            kwargs={"mock_response": "from the host's own model"},
        ),
        utility_model=models.ModelConfig(models.ModelType.CHAT, "openai", "host-util"),
    )
    agent = AgentV09(loader, models, original)
    shared_chat = original.chat_model

    out = asyncio.run(agent.iteration("hello!"))
    assert "nano answered" in out
    assert agent.config is not original and original.chat_model is shared_chat
    assert shared_chat.name == "host-default"  # the shared config is untouched
    assert agent.config.chat_model.name == "gpt-4.1-nano"
    msg = asyncio.run(
        agent.run_tool({"tool_name": "switch_model", "tool_args": {"model": "mini", "reason": "x"}})
    )
    assert msg == "Switched to mini for the next turn."
    assert "mini answered" in asyncio.run(agent.iteration())
    got = rows(tmp_path / "ledger.db")
    assert [(r["kind"], r["model"]) for r in got] == [
        ("chat", "gpt-4.1-nano"),
        ("tool", "switch_model"),
        ("chat", "gpt-4.1-mini"),
    ]
    # v0.9 has util_model_call_before only: the utility call is routed and swapped, not recorded, and it
    # leaves nothing behind (no call in flight, no budget held).
    assert "nano answered" in asyncio.run(agent.call_utility_model("Summarize.", "text"))
    rt = rtmod.current()
    assert rt._calls == {} and len(rows(tmp_path / "ledger.db")) == 3


def test_edited_settings_take_effect_and_bad_ones_keep_the_last_good(tmp_path, a0_imports, caplog):
    import models
    from helpers.extension import Extension
    from helpers.tool import Tool

    root = _checkout(tmp_path, "v1")
    settings = _settings_file(tmp_path)
    inst.install(root, str(settings))
    plugin = root / "usr/plugins/agent_router"
    agent = AgentV1(Loader([plugin / "extensions/python"], [plugin / "tools"], Extension, Tool), models)
    premium = {"tool_name": "switch_model", "tool_args": {"tier": "premium", "reason": "hard proof"}}
    chat = {
        "tool_name": "switch_model",
        "tool_args": {"tier": "chat", "reason": "x", "scope": "conversation"},
    }

    async def step(request: dict) -> str:
        return await agent.run_tool(request)

    asyncio.run(agent.iteration("hi"))
    assert asyncio.run(step(chat)).startswith("Switched")
    assert asyncio.run(step(premium)).startswith("Switch refused")
    data = json.loads(settings.read_text())
    data["tool_policy"] = {"max_tier": "premium"}
    settings.write_text(json.dumps(data))
    os.utime(settings, (1, 1))  # a different mtime even within the file system's time resolution
    assert asyncio.run(step(premium)) == "Switched to the premium tier for the next turn."
    assert "sonnet answered" in asyncio.run(agent.iteration())  # the agent's switch survived the reload
    assert "mini answered" in asyncio.run(agent.iteration())  # ...and so did its conversation-wide choice
    settings.write_text('{"tool_policy": {"max_tier": "platinum"}}')
    os.utime(settings, (2, 2))
    assert asyncio.run(step(premium)).startswith("Switched")  # last good settings kept
    assert "settings not reloaded, keeping the last good ones" in caplog.text
    assert "$.tool_policy.max_tier" in caplog.text


def test_v09_a_subordinate_running_inside_a_turn_does_not_take_its_superiors_call(
    tmp_path, a0_legacy_imports
):
    import models
    from python.helpers.extension import Extension
    from python.helpers.tool import Tool

    root = _checkout(tmp_path, "legacy")
    inst.install(root, str(_settings_file(tmp_path)))
    loader = Loader([root / "usr/extensions"], [root / "usr/tools"], Extension, Tool)

    def config() -> AgentConfigV09:
        return AgentConfigV09(
            chat_model=models.ModelConfig(models.ModelType.CHAT, "openai", "host-default"),
            utility_model=models.ModelConfig(models.ModelType.CHAT, "openai", "host-util"),
        )

    agent0 = AgentV09(loader, models, config())
    agent1 = AgentV09(loader, models, config())
    agent1.context = agent0.context  # a subordinate shares its superior's chat
    agent0.subordinate = agent1
    asyncio.run(agent0.iteration("hello!"))
    got = rows(tmp_path / "ledger.db")
    assert [(r["kind"], r["conversation_id"]) for r in got] == [("chat", "ctx-v09"), ("chat", "ctx-v09")]
    assert agent0.data == {} and agent1.data == {}  # both calls recorded, nothing left pending


def test_v1_chat_calls_outside_the_iteration_are_routed_on_their_own_messages(tmp_path, a0_imports):
    import models
    from helpers.extension import Extension
    from helpers.tool import Tool

    root = _checkout(tmp_path, "v1")
    inst.install(root, str(_settings_file(tmp_path)))
    plugin = root / "usr/plugins/agent_router"
    agent = AgentV1(Loader([plugin / "extensions/python"], [plugin / "tools"], Extension, Tool), models)
    assert "nano answered" in asyncio.run(agent.iteration("hi, thanks!"))  # the turn: utility tier
    # A tool (Agent Zero's document_query does this) asks the chat model about a document mid-turn:
    question = (
        "Write a Python function that parses this document's tables, then analyze and compare the three "
        "schemas step by step and explain the trade-offs of each for the migration."
    )
    response, _ = asyncio.run(
        agent.call_chat_model([Msg("system", "Answer from the document."), Msg("human", question)])
    )
    assert "nano answered" not in response
    assert rows(tmp_path / "ledger.db")[-1]["tier"] in ("chat", "premium")
    assert "nano answered" in asyncio.run(agent.iteration())  # the iteration's own call keeps the turn's tier


def test_v1_a_failing_tool_and_an_escalation_are_implicit_verdicts_on_the_answers(tmp_path, a0_imports):
    import models
    from helpers.extension import Extension
    from helpers.tool import Tool

    root = _checkout(tmp_path, "v1")
    inst.install(root, str(_settings_file(tmp_path)))
    plugin = root / "usr/plugins/agent_router"
    host_tools = tmp_path / "host_tools"  # Agent Zero's own tools folder, after the plugin's
    host_tools.mkdir()
    (host_tools / "code_execution_tool.py").write_text(
        "from helpers.tool import Response, Tool\n\n"
        "class CodeExecution(Tool):\n"
        "    async def execute(self, **kwargs):\n"
        "        return Response(message='Traceback (most recent call last):\\n  File \"x.py\"\\n"
        "ZeroDivisionError: division by zero', break_loop=False)\n"
    )
    agent = AgentV1(
        Loader([plugin / "extensions/python"], [plugin / "tools", host_tools], Extension, Tool), models
    )

    async def session() -> None:
        await agent.iteration("hi, thanks!")  # call 1 (nano)
        await agent.run_tool({"tool_name": "code_execution_tool", "tool_args": {"code": "1/0"}})
        await agent.iteration()  # call 2 (nano)
        await agent.run_tool({"tool_name": "switch_model", "tool_args": {"tier": "chat", "reason": "stuck"}})

    asyncio.run(session())
    got = [(r["call_id"], r["source"], r["signal"]) for r in rtmod.current().ledger.outcomes()]
    assert got == [(1, "implicit", "tool_error"), (2, "implicit", "switch_model")]
