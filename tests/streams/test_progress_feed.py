"""The progress feed reads `bulk.progress` from its cursor in the state; a worker that
has none yet (upgraded from the faust agent that read the reports before) starts
where faust's consumer group stopped, not at the topic's beginning.

Reports of jobs the worker does not know are logged and count nowhere, so the
log shows which reports the feed read."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.fanout import PageProgress
from streams.settings import Settings
from streams.testing.client import Client, ingest_generated
from streams.testing.processes import WorkerProcess, wait_for
from streams.testing.topics import read_topic


def _report(job_id: str) -> bytes:
    report = PageProgress(job_id=job_id, tenant="acme", page=0, enqueued=1, failures=[])
    return orjson.dumps(report.to_wire())


def test_an_upgraded_worker_counts_reports_from_where_faust_s_group_stopped(
    topology: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    producer = Producer({"bootstrap.servers": topology.kafka_bootstrap_servers})
    for job_id in ("read-by-faust-0", "read-by-faust-1", "read-by-faust-2"):
        producer.produce(topology.topic_progress, _report(job_id), job_id.encode(), partition=0)
    producer.flush(30)
    # Where faust's agent (group = the app id) committed: past the three reports.
    group = Consumer(
        {"bootstrap.servers": topology.kafka_bootstrap_servers, "group.id": topology.app_id}
    )
    try:
        group.commit(offsets=[TopicPartition(topology.topic_progress, 0, 3)], asynchronous=False)
    finally:
        group.close()
    producer.produce(topology.topic_progress, _report("not-read-yet"), b"not-read-yet", partition=0)
    producer.flush(30)

    worker = start_worker("w1")
    wait_for(lambda: b"not-read-yet" in worker.log(), 60, "the report after the group's offset")
    assert b"read-by-faust" not in worker.log()


def test_a_report_that_makes_room_releases_the_next_pages_without_bulk_control(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    """The feed reads the job's partition, so its worker holds the job: the release
    is applied where the report is counted, not asked for on `bulk.control` and
    read back through faust's consumer (a hop through the broker per release)."""
    start_worker("w1", fanout_window_pages=4, fanout_page_size=10)
    job_id = client.create({"template": "T"})
    assert ingest_generated(client, job_id, 200) == 200  # 20 pages
    client.run(job_id)
    view = client.wait_status(job_id, "COMPLETED", 60)
    assert (view.enqueued, view.failures) == (200, 0)
    pages = read_topic(topology, topology.topic_fanout_pages, expected=20, idle=2)
    assert len({key for key, _, _ in pages}) == 20
    releases = read_topic(topology, topology.topic_control, idle=2)
    asked = [value for _, value, _ in releases if value.get("kind") == "release"]
    assert not [value for value in asked if not value.get("again")], asked


def test_a_pause_settled_by_the_reports_is_answered(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    """With no fan-out running, the run's pages stay out and a pause waits for them;
    a fan-out worker started then reports them, and the progress feed settles the
    pause and answers it (keeping the answer in the job's partition of the state)."""
    aggregate = start_worker("aggregate", stage="aggregate", fanout_window_pages=4)
    job_id = client.create({"template": "T"})
    assert ingest_generated(client, job_id, 10 * 500) == 5000  # 10 pages, 4 handed over
    client.run(job_id)
    client.wait_status(job_id, "PROCESSING", 60)
    pause = client.send({"kind": "pause", "jobId": job_id})
    time.sleep(3)
    assert client.reader.result(job_id, pause.command_id) is None  # waiting for the pages out
    assert client.job(job_id).status == "PROCESSING"  # type: ignore[union-attr]
    start_worker("fanout", stage="fanout")
    assert client.result(pause.command_id, timeout=60).ok
    view = client.wait_status(job_id, "PAUSED", 30)
    assert (view.enqueued, view.failures) == (4 * 500, 0)
    assert aggregate.alive()
