"""Fixtures of the stream tests: real worker processes over this test's own topics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.client import Client
from streams.testing.processes import WorkerProcess


@pytest.fixture
def topology(settings: Settings) -> Settings:
    """This test's settings, with every topic created up front."""
    ensure_topics(settings)
    return settings


@pytest.fixture
def start_worker(topology: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(
        worker_id: str = "w1",
        stage: str = "all",
        settings: Settings | None = None,
        **overrides: object,
    ) -> WorkerProcess:
        settings = (settings or topology).model_copy(update=overrides)
        worker = WorkerProcess(settings, worker_id, tmp_path, stage).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def client(topology: Settings) -> Iterator[Client]:
    with Client(topology) as client:
        yield client
