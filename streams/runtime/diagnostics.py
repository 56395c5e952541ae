"""What a worker tells about itself on `kill -USR2 <pid>`: where each task waits, and
the faust consumer's view of its partitions (paused, buffered, read offsets).

It reads faust's and aiokafka's private state, so it is for diagnosing a stuck
worker by hand, never for logic.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


def dump_consumer(app: Any) -> None:
    """Log the faust consumer's view of its partitions (`kill -USR2 <pid>`)."""
    consumer = app.consumer
    log.warning(
        "consumer: flow_control=%s flow_active=%s active=%s paused=%s buffered=%s read_offset=%s",
        app.flow_control.is_active(),
        consumer.flow_active,
        sorted(consumer._active_partitions or ()),
        sorted(consumer._paused_partitions),
        sorted(consumer._buffered_partitions),
        dict(consumer._read_offset),
    )
    for channel in app.topics:
        queue = getattr(channel, "_queue", None)
        if queue is not None:
            log.warning("channel %s queue size %d", channel, queue.qsize())
    aio = consumer._thread._consumer
    fetcher = aio._fetcher
    assignment = aio._subscription.subscription.assignment
    for tp in sorted(assignment.tps):
        state = assignment.state_value(tp)
        log.warning(
            "aiokafka %s:%s paused=%s position=%s buffered=%s",
            tp.topic,
            tp.partition,
            state.paused,
            state.position if state.has_valid_position else None,
            tp in fetcher._records,
        )


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
        log.warning(
            "task %s waits in:\n  %s\n  on %r",
            task.get_name(),
            "\n  ".join(chain) or "?",
            getattr(task, "_fut_waiter", None),
        )


def dump(app: Any) -> None:
    try:
        dump_tasks()
        dump_consumer(app)
    except Exception:  # a diagnostic must never take the worker down
        log.exception("could not dump the worker's state")
