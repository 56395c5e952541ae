"""A stack for real-stack tests: two workers and the API over one test's topics, and
the small steps every such test takes (a job over HTTP, its view, its sends, its
lifecycle, a counter of the workers' metrics)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from streams.settings import Settings
from streams.testing.client import Client, ingest_generated
from streams.testing.processes import ApiProcess, WorkerProcess, wait_for, wait_ready
from streams.testing.topics import read_topic

TEMPLATE = {"message": {"template": "T"}}


def create(http: httpx.Client) -> str:
    answer = http.post("/bulk", json=TEMPLATE)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["jobId"])


def job_of(http: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = http.get(f"/bulk/{job_id}")
    assert answer.status_code == 200, answer.text
    job: dict[str, Any] = answer.json()["job"]
    return job


def wait_job(
    http: httpx.Client, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    return wait_for(
        lambda: (lambda job: job if until(job) else None)(job_of(http, job_id)),
        timeout,
        f"job {job_id}",
        every=0.05,
    )


def sends_of(settings: Settings, job_id: str) -> list[dict[str, Any]]:
    """Every send of the job a read_committed reader finds now."""
    return [v for _, v, _ in read_topic(settings, settings.topic_sends) if v["jobId"] == job_id]


def statuses(settings: Settings, job_id: str) -> list[dict[str, Any]]:
    """The job's lifecycle events on `bulk.job-events`, each status once, in order."""
    events: list[dict[str, Any]] = []
    for _, event, _ in read_topic(settings, settings.topic_job_events):
        if event["jobId"] == job_id and (
            not events
            or (event["status"], event.get("previous"))
            != (events[-1]["status"], events[-1].get("previous"))
        ):
            events.append(event)
    return events


def metric(workers: list[WorkerProcess], name: str, **labels: str) -> float:
    """A counter summed over the workers' /metrics (its samples with these labels)."""
    total = 0.0
    for worker in workers:
        text = httpx.get(f"{worker.metrics_url()}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            total += sum(
                s.value
                for s in family.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
            )
    return total


def two_workers(
    start_worker: Callable[..., WorkerProcess], **overrides: object
) -> list[WorkerProcess]:
    workers = [start_worker("w1", **overrides), start_worker("w2", **overrides)]
    wait_ready(workers, settled=True)
    return workers


@contextlib.contextmanager
def stack(
    topology: Settings,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
    **overrides: object,
) -> Iterator[tuple[list[WorkerProcess], httpx.Client]]:
    """Two workers (ready, the fan-out group settled) and the API; its client."""
    workers = two_workers(start_worker, **overrides)
    api = ApiProcess(topology, tmp_path).start()
    try:
        with api.client() as http:
            yield workers, http
    finally:
        api.stop()


def generated_job(http: httpx.Client, client: Client, users: int) -> str:
    """A job created over HTTP, its generated users ingested on `bulk.commands`."""
    job_id = create(http)
    client.jobs.clear()
    assert ingest_generated(client, job_id, users) == users
    return job_id
