"""Bounded memory: a worker's peak RSS does not follow the size of the job."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.client import Client, ingest_generated
from streams.testing.processes import WorkerProcess, peak_rss_kib
from streams.testing.topics import fresh_settings


def _peak_rss_for_job(
    settings: Settings, users: int, start_worker: Callable[..., WorkerProcess]
) -> int:
    """Peak RSS (KiB) of one fresh worker that ingests and fans out one job of `users`."""
    ensure_topics(settings)
    with Client(settings) as client:
        worker = start_worker("mem", settings=settings)
        job_id = client.create({"template": "T", "data": {"campaign": "memory"}})
        assert ingest_generated(client, job_id, users) == users
        client.run(job_id)
        job = client.wait_status(job_id, "COMPLETED", 1500)
    assert job.enqueued == users
    peak = peak_rss_kib(worker.pid)
    worker.stop()
    return peak


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_peak_rss_of_a_1m_user_job_is_within_1_2x_of_a_100k_one(
    topology: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    small = _peak_rss_for_job(fresh_settings(topology, "small"), 100_000, start_worker)
    large = _peak_rss_for_job(fresh_settings(topology, "large"), 1_000_000, start_worker)
    ratio = large / small
    print(
        f"\npeak RSS: 100k users {small / 1024:.0f} MiB, "
        f"1M users {large / 1024:.0f} MiB, ratio {ratio:.2f}"
    )
    assert ratio <= 1.2
