"""An asyncio face for ProviderClient, for async hosts: the same calls, run on a worker thread pool so the
event loop never blocks. One retry/failover implementation serves both (the sync one)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import types as t
from .client import ProviderClient

_END = object()


class AsyncProviderClient:
    """`await complete(...)`, `async for d in stream(...)`; arguments as ProviderClient's."""

    def __init__(self, client: ProviderClient | None = None, *, max_workers: int = 32, **kw: Any):
        self.client = client or ProviderClient(**kw)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="agent-router-http")

    async def complete(self, model: Any, messages: list[dict[str, Any]], **kw: Any) -> t.Completion:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self.client.complete(model, messages, **kw))

    async def stream(self, model: Any, messages: list[dict[str, Any]], **kw: Any) -> AsyncIterator[t.Delta]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def pump() -> None:
            gen = self.client.stream(model, messages, **kw)
            try:
                for d in gen:
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, d)
            except BaseException as e:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                gen.close()  # closes the HTTP stream when the consumer stopped early
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        loop.run_in_executor(self._pool, pump)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # the worker stops at its next delta (or timeout) and closes the stream

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False)
        self.client.close()

    async def __aenter__(self) -> AsyncProviderClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
