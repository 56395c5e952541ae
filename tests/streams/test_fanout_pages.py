"""A page the fan-out meets again, on the real broker: its sends are not made twice,
and its progress report is sent again, so that a report the aggregate lost is
made good when the aggregate emits the page again. And a fan-out told to stop while
its producer's queue is full (the broker gone) stops."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from schemas.fanout import PageFields, encode_page_spliced
from streams.errors import Stopped
from streams.fanout.loop import STOP_GRACE_SECONDS, FanoutLoop
from streams.ids import new_job_id
from streams.settings import Settings
from streams.testing.processes import wait_for
from streams.testing.topics import read_topic

USERS = 5


def page(job_id: str, number: int) -> bytes:
    """A page as the aggregate writes it: `USERS` users, one of them without an
    address for the channel (a failure the report names)."""
    fields = PageFields(
        job_id=job_id,
        tenant="acme",
        page=number,
        page_size=USERS,
        created_at=1_764_000_000.5,
        message={"template": "T", "routing": {"method": "single", "channels": ["email"]}},
        data={},
        message_ids="position",
        users=[],
    )
    entries = [
        [number * USERS + i, f"user:u{i}", {"to": {"email": f"u{i}@example.com"}}]
        for i in range(USERS - 1)
    ]
    entries.append([number * USERS + USERS - 1, "user:nobody", {"to": {"phone_number": "555"}}])
    users = b"[" + b",".join(orjson.dumps(entry) for entry in entries) + b"]"
    return encode_page_spliced(fields, users)


def reported_again() -> float:
    """This process's count of pages reported again (the fan-out loops run here)."""
    return REGISTRY.get_sample_value("bulkstream_fanout_pages_reported_again_total") or 0.0


def emit(settings: Settings, key: bytes, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(settings.topic_fanout_pages, key=key, value=value)
    assert producer.flush(30) == 0


def run_loop(settings: Settings, worker_id: str) -> tuple[FanoutLoop, threading.Thread]:
    loop = FanoutLoop(settings.model_copy(update={"worker_id": worker_id}))
    thread = threading.Thread(target=loop.run, name=f"fanout-{worker_id}")
    thread.start()
    return loop, thread


def stop(loop: FanoutLoop, thread: threading.Thread) -> None:
    loop.stop()
    thread.join(60)
    assert not thread.is_alive()


def test_a_page_met_again_sends_nothing_more_and_reports_again(topology: Settings) -> None:
    job_id = new_job_id(int(time.time()))
    key, value = f"{job_id}:3".encode(), page(job_id, 3)
    before = reported_again()

    first = run_loop(topology, "w1")
    try:
        emit(topology, key, value)
        sends = read_topic(topology, topology.topic_sends, expected=USERS - 1, idle=1)
        assert len(sends) == USERS - 1
    finally:
        stop(*first)

    # Another worker: it holds the page's partition with w1's done-marker restored.
    second = run_loop(topology, "w2")
    try:
        emit(topology, key, value)
        wait_for(lambda: reported_again() == before + 1, 60, "the page to be reported again")
    finally:
        stop(*second)

    reports = [value for _, value, _ in read_topic(topology, topology.topic_progress)]
    assert len(reports) == 2
    assert reports[0] == reports[1]
    assert reports[0]["page"] == 3
    assert reports[0]["enqueued"] == USERS - 1
    assert [position for position, _ in reports[0]["failures"]] == [3 * USERS + USERS - 1]
    assert len(read_topic(topology, topology.topic_sends)) == USERS - 1


def test_a_fan_out_told_to_stop_gives_up_a_send_that_waits_for_room(tmp_path: Path) -> None:
    """No broker answers and the producer's queue is full: room would come only as the
    queued records time out (the transaction timeout, 30 s by default). A stop gives
    the send up after a short grace, and with it the session (its transaction is
    never seen)."""
    loop = FanoutLoop(Settings(data_dir=tmp_path, worker_id="w-full"))
    nobody = Producer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "queue.buffering.max.messages": 1,
            "message.timeout.ms": 20_000,
        }
    )
    try:
        nobody.produce("bulk.sends", b"queued")  # the queue is full
        threading.Timer(0.3, loop.stop).start()
        started = time.monotonic()
        with pytest.raises(Stopped):
            loop._produce(nobody, "bulk.sends", b"key", b"waits")
        assert time.monotonic() - started < 0.3 + STOP_GRACE_SECONDS + 2
    finally:
        nobody.purge()
        loop.done.close()
