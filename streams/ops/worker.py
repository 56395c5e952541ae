"""Running a worker: the faust app (aggregate stage), the fan-out loop and the webhooks
dispatcher, or one of them."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import threading
from enum import StrEnum
from functools import partial
from typing import Any

from streams import aggregate, metrics
from streams.aggregate.pipeline import Pipeline, build_pipeline
from streams.fanout.loop import FanoutLoop
from streams.kafka.topics import ensure_topics
from streams.metrics import Health
from streams.ops.logs import logging_config, setup_logging
from streams.runtime import diagnostics
from streams.runtime.access import read_lags
from streams.runtime.service import ThreadService, run_app
from streams.settings import Settings
from streams.webhooks.dispatcher import Dispatcher

log = logging.getLogger(__name__)


class Stage(StrEnum):
    ALL = "all"  # the aggregate (faust app) and the fan-out loop, in one process
    AGGREGATE = "aggregate"  # only the faust app: the command feed, progress, control
    FANOUT = "fanout"  # only the transactional fan-out loop
    WEBHOOKS = "webhooks"  # only the webhooks dispatcher (streams/webhooks/)


def _glibc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return None


# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
# Blocks this large and up come from mmap: each a fresh mapping that the kernel
# zeroes page by page (page faults on every copy), unmapped again on free.
# Large commands and dead letters are copied several times; served from the
# reused heap instead. 32 MB is glibc's ceiling, and above the largest message
# (16 MB).
MMAP_THRESHOLD = 32 * 1024 * 1024
# Free memory at the top of a heap kept for reuse; the trim every 5 s
# (`trim_malloc`) hands back all of it anyway.
TRIM_THRESHOLD = 64 * 1024 * 1024
# Collect the youngest objects after this many more allocations than frees
# (CPython: 700). An ingest command builds ~10k objects (its users' models)
# that live until it is applied: at 700 they reach the oldest generation,
# whose full collections then cost the agents a large share of their time. A
# feed's fetch makes 10,000 records (librdkafka `Message`s, tracked) that live
# until the batch is applied: at 10,000 each fetch set off a collection that
# walked them (the delivery fold's collector held 3.9 % of the GIL, py-spy).
GC_THRESHOLD = 100_000


def tune_malloc(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (like MALLOC_ARENA_MAX=2), and serve large
    blocks from the heap rather than fresh mappings (`MMAP_THRESHOLD`);
    whether the C library took every setting.

    RocksDB's and librdkafka's threads each get an arena by default, and
    freed memory stays in them; with many arenas a worker's RSS creeps up
    with the amount of work, not with what it holds."""
    libc = _glibc()
    if libc is None:
        return False
    wanted = {
        M_ARENA_MAX: arenas,
        M_MMAP_THRESHOLD: MMAP_THRESHOLD,
        M_TRIM_THRESHOLD: TRIM_THRESHOLD,
    }
    refused = [param for param, value in wanted.items() if libc.mallopt(param, value) != 1]
    if refused:
        log.warning("glibc refused mallopt parameters %s", refused)
    return not refused


def tune_gc() -> None:
    """Leave what start-up made (modules, classes) out of every later collection,
    and collect the young generation less often (`GC_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def trim_malloc() -> None:
    """Hand freed heap memory back to the system (the batches and pages a
    worker passes through are large and short-lived)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _aggregate_lags(pipeline: Pipeline) -> list[tuple[str, int, int]]:
    """Records not yet read, per partition of the agents' topics this worker
    holds, and commands not yet applied (the command feed's own count)."""
    topics = {pipeline.topics.control.get_topic_name()}
    lags = read_lags(pipeline.app, topics)
    feed = pipeline.app.feed
    return lags + (feed.lags() if feed is not None else [])


def run_worker(settings: Settings, stage: Stage) -> int:
    tune_malloc()
    tune_gc()
    if settings.worker_niceness:
        os.nice(settings.worker_niceness)
    setup_logging(settings)
    ensure_topics(settings)
    health = Health()
    stop_metrics = metrics.serve(settings.metrics_host, settings.metrics_port, health)
    try:
        return _run(settings, stage, health)
    finally:
        stop_metrics()


def _run(settings: Settings, stage: Stage, health: Health) -> int:
    def fanout_ready(ready: bool) -> None:
        health.ready["fanout"] = ready

    if stage is Stage.WEBHOOKS:
        health.ready["webhooks"] = False
        dispatcher = Dispatcher(settings, on_joined=partial(_joined, health, "webhooks"))
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: dispatcher.stop())
        beat = threading.Thread(target=_beat_while, args=(health, dispatcher.stopping), daemon=True)
        beat.start()
        dispatcher.run()
        return 0

    if stage is Stage.FANOUT:
        health.ready["fanout"] = False
        loop = FanoutLoop(settings, on_ready=fanout_ready)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: loop.stop())
        beat = threading.Thread(target=_beat_while, args=(health, loop.stopping), daemon=True)
        beat.start()
        loop.run()
        return 0

    pipeline = build_pipeline(settings)
    aggregate.register(pipeline)
    app = pipeline.app
    health.ready["aggregate"] = False
    lag = metrics.LagGauge(settings.app_id)

    async def heartbeat() -> None:
        health.beat()
        health.ready["aggregate"] = app.tables.recovery.completed.is_set() and not app.rebalancing

    async def report_lag() -> None:
        lag.update(_aggregate_lags(pipeline))

    async def release_memory() -> None:
        trim_malloc()

    app.timer(interval=1.0, name="bulkstream.heartbeat")(heartbeat)
    app.timer(interval=5.0, name="bulkstream.lag")(report_lag)
    app.timer(interval=5.0, name="bulkstream.trim_malloc")(release_memory)

    async def install_dump_handler() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, diagnostics.dump, app)

    app.task(install_dump_handler)
    services = []
    if stage is Stage.ALL:
        health.ready["fanout"] = False
        fanout = FanoutLoop(settings, on_ready=fanout_ready)
        services.append(ThreadService(fanout.run, fanout.stop, name="fanout"))
        # On a thread and an event loop of its own: slow endpoints never delay the engine.
        health.ready["webhooks"] = False
        dispatcher = Dispatcher(settings, on_joined=partial(_joined, health, "webhooks"))
        services.append(ThreadService(dispatcher.run, dispatcher.stop, name="webhooks"))
    run_app(app, *services, loglevel=settings.log_level, logging_config=logging_config(settings))
    return 0


def _joined(health: Health, name: str) -> None:
    health.ready[name] = True


def _beat_while(health: Health, stopping: threading.Event) -> None:
    """The fan-out-only worker has no event loop; its heartbeat is a thread."""
    while not stopping.wait(1.0):
        health.beat()
