from __future__ import annotations

from collections.abc import Callable

from streams.settings import Settings
from tests.streams.harness import Client, WorkerProcess, read_topic


def test_small_job_end_to_end(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()
    job_id = client.create({"event": "WELCOME", "data": {"a": 1}})
    cmd = client.ingest(job_id, [{"to": {"user_id": f"u{i}"}} for i in range(10)])
    try:
        result = client.result(cmd.command_id, timeout=90)
    except AssertionError:
        print(worker.log_tail(200))
        raise
    assert result.total == 10
    client.run(job_id)
    job = client.wait_status(job_id, "COMPLETED", 60)
    assert job.enqueued == 10
    sends = read_topic(topology, topology.topic_sends, expected=10, idle=2)
    assert len(sends) == 10
