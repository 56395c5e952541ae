"""Running a worker: the faust app (aggregate stage) and/or the fan-out loop."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import threading
from enum import StrEnum
from typing import Any

import faust
import mode

from streams.app import create_app
from streams.fanout import FanoutLoop
from streams.settings import Settings
from streams.topics import ensure_topics

log = logging.getLogger(__name__)


class Stage(StrEnum):
    ALL = "all"  # the aggregate (faust agents) and the fan-out loop, in one process
    AGGREGATE = "aggregate"  # only the faust agents: commands, progress, control
    FANOUT = "fanout"  # only the transactional fan-out loop


class FanoutService(mode.Service):
    """Runs the blocking fan-out loop on its own thread beside the faust agents."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fanout = FanoutLoop(settings)
        self._thread: threading.Thread | None = None

    async def on_start(self) -> None:
        self._thread = threading.Thread(target=self.fanout.run, name="fanout", daemon=True)
        self._thread.start()

    async def on_stop(self) -> None:
        self.fanout.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 60)


def _glibc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (like MALLOC_ARENA_MAX=2).

    RocksDB's and librdkafka's threads each get an arena by default, and
    freed memory stays in them; with many arenas a worker's RSS creeps up
    with the amount of work, not with what it holds."""
    libc = _glibc()
    if libc is not None:
        m_arena_max = -8
        libc.mallopt(m_arena_max, arenas)


def trim_malloc() -> None:
    """Hand freed heap memory back to the system (the batches and pages a
    worker passes through are large and short-lived)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def dump_tasks() -> None:
    """Log where every asyncio task of the worker waits (`kill -USR2 <pid>`)."""
    for task in asyncio.all_tasks():
        chain = []
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = next(
                (
                    getattr(awaited, a)
                    for a in ("cr_frame", "ag_frame", "gi_frame")
                    if getattr(awaited, a, None)
                ),
                None,
            )
            if frame is not None:
                chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            awaited = next(
                (
                    getattr(awaited, a)
                    for a in ("cr_await", "ag_await", "gi_yieldfrom")
                    if getattr(awaited, a, None)
                ),
                None,
            )
        log.warning("task %s waits in:\n  %s", task.get_name(), "\n  ".join(chain) or "?")


def run_worker(settings: Settings, stage: Stage) -> int:
    limit_malloc_arenas()
    ensure_topics(settings)
    if stage is Stage.FANOUT:
        logging.basicConfig(level=settings.log_level.upper())
        loop = FanoutLoop(settings)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: loop.stop())
        loop.run()
        return 0
    pipeline = create_app(settings)

    async def release_memory() -> None:
        trim_malloc()

    pipeline.app.timer(interval=5.0, name="bulkstream.trim_malloc")(release_memory)

    async def install_dump_handler() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump_tasks)

    pipeline.app.task(install_dump_handler)
    services = [FanoutService(settings)] if stage is Stage.ALL else []
    worker = faust.Worker(pipeline.app, *services, loglevel=settings.log_level)
    worker.execute_from_commandline()
    return 0
