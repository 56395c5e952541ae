"""Running the faust app as a worker process, with services of our own beside it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import faust
import mode


class ThreadService(mode.Service):
    """Runs a blocking loop on its own thread beside the faust agents: `run` on
    start, `stop` (then up to `join_seconds` for `run` to return) on stop."""

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

    async def on_start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self.thread.start()

    async def on_stop(self) -> None:
        self.halt()
        if self.thread is not None:
            await asyncio.to_thread(self.thread.join, self.join_seconds)


def run_app(app: Any, *services: Any, loglevel: str, logging_config: Any) -> None:
    """Run the app and the services in this process until it is told to stop
    (faust's worker: signals, logging, the event loop)."""
    faust.Worker(
        app, *services, loglevel=loglevel, logging_config=logging_config
    ).execute_from_commandline()
