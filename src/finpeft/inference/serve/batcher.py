"""Micro-batching: texts from concurrent requests scored in one forward pass."""
import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable


class MicroBatcher:
    """Collects texts from concurrent requests into one forward pass.

    Written by hand: the serving libraries that batch (Triton, TorchServe, Ray Serve) are whole servers; what
    is needed here is one asyncio queue and a worker. The model runs in one worker thread so the event loop
    keeps accepting requests while it computes."""

    class Busy(Exception):
        """The queue is full: the server is at capacity (503)."""

    def __init__(self, predict: Callable, max_batch: int, max_wait_ms: float, on_batch: Callable = None,
                 max_queue: int = 1024, timeout_s: float = 120.0):
        self.predict = predict  # predict(texts) or, for requests that name one, predict(texts, key)
        self.max_batch, self.max_wait, self.timeout = max_batch, max_wait_ms / 1000, timeout_s
        self.on_batch = on_batch or (lambda n: None)
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)  # bounded: overload answers 503, not OOM
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finpeft-model")
        self.task: asyncio.Task | None = None
        self.held = None  # a request that did not fit the last batch: it opens the next one

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str], key=None):
        """Score texts with the others waiting: only requests with the same key (e.g. an LLM run's task) share
        a forward pass. Returns this request's rows of predict's output."""
        if self.task is None or self.task.done():
            raise RuntimeError("the batching worker is not running")
        fut = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((texts, fut, key))
        except asyncio.QueueFull:
            raise MicroBatcher.Busy from None
        return await asyncio.wait_for(fut, self.timeout)

    async def _next(self, timeout: float | None):
        if self.held is not None:
            item, self.held = self.held, None
            return item
        if timeout is None:
            return await self.queue.get()
        try:
            return self.queue.get_nowait()  # whatever already waits joins, even with max_wait 0
        except asyncio.QueueEmpty:
            if timeout <= 0:
                return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._next(None)]
            n = len(items[0][0])
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:  # gather company until the batch is full or the first text waited long enough
                item = await self._next(deadline - loop.time())
                if item is None:
                    break
                if n + len(item[0]) > self.max_batch or item[2] != items[0][2]:  # full, or another task
                    self.held = item
                    break
                items.append(item)
                n += len(item[0])
            try:
                await self._score(loop, items)
            except Exception:  # noqa: BLE001 - one bad request must not fail its batch-mates: score each alone
                for item in items:
                    try:
                        await self._score(loop, [item])
                    except Exception as e:  # noqa: BLE001 - handed to that request's caller
                        if not item[1].done():
                            item[1].set_exception(e)

    async def _score(self, loop, items) -> None:
        texts = [t for ts, _, _ in items for t in ts]
        key = items[0][2]
        args = (texts,) if key is None else (texts, key)
        probs = await loop.run_in_executor(self.pool, self.predict, *args)
        self.on_batch(len(texts))
        i = 0
        for ts, fut, _ in items:
            if not fut.done():  # a client that gave up (timeout, disconnect) has a done/cancelled future
                fut.set_result(probs[i:i + len(ts)])
            i += len(ts)


