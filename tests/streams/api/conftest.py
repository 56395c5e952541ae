"""Fixtures of the HTTP API tests: a real `bulkstream api` process beside a real worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.testing.processes import ApiProcess, WorkerProcess


@pytest.fixture
def api(
    topology: Settings, tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> Iterator[ApiProcess]:
    """The API and one worker over this test's own topics and Redis prefix."""
    start_worker()
    server = ApiProcess(topology, tmp_path).start()
    yield server
    server.stop()
