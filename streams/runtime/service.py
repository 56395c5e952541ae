"""Running the faust app as a worker process, with services of our own beside it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import faust
import mode

from streams.errors import ThreadEnded


class ThreadService(mode.Service):
    """Runs a blocking loop on its own thread beside the faust agents: `run` on
    start, `stop` (then up to `join_seconds` for `run` to return) on stop.

    A loop that ends before it is told to stop (it raised) crashes the service, and
    the worker exits with an error for its supervisor to start it again: a worker
    whose fan-out thread had died went on answering `/healthz`, and its partitions
    of the pages topic were never fanned out."""

    def __init__(
        self,
        run: Callable[[], None],
        stop: Callable[[], None],
        name: str,
        join_seconds: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.halt = stop
        self.thread_name = name
        self.join_seconds = join_seconds
        self.thread: threading.Thread | None = None
        self.halting = False

    async def on_start(self) -> None:
        self.halting = False
        loop = asyncio.get_running_loop()
        self.thread = threading.Thread(
            target=self._main, args=(loop,), name=self.thread_name, daemon=True
        )
        self.thread.start()

    def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self.run()
        finally:  # whatever ended it (the thread's own hook logs what it raised)
            if not self.halting:
                ended = ThreadEnded(f"the {self.thread_name} thread ended on its own")
                asyncio.run_coroutine_threadsafe(self.crash(ended), loop)

    async def on_stop(self) -> None:
        self.halting = True
        self.halt()
        if self.thread is not None:
            await asyncio.to_thread(self.thread.join, self.join_seconds)


def run_app(app: Any, *services: Any, loglevel: str, logging_config: Any) -> None:
    """Run the app and the services in this process until it is told to stop
    (faust's worker: signals, logging, the event loop)."""
    faust.Worker(
        app, *services, loglevel=loglevel, logging_config=logging_config
    ).execute_from_commandline()
