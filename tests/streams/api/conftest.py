"""Fixtures of the HTTP API tests: a real `bulkstream api` process beside a real worker."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from streams.settings import Settings
from tests.streams.harness import WorkerProcess, settings_env

KEYS = {"acme": "sk-acme-0123456789", "globex": "sk-globex-9876543210"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ApiServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, tenant: str | None = "acme", **headers: str) -> httpx.Client:
        if tenant is not None:
            headers["Authorization"] = f"Bearer {KEYS[tenant]}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def start_api(settings: Settings, log_dir: Path, **overrides: object) -> ApiServer:
    port = free_port()
    env = settings_env(
        settings,
        api_port=port,
        api_keys=",".join(f"{tenant}:{key}" for tenant, key in KEYS.items()),
        **overrides,
    )
    log_path = log_dir / f"api-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.ops.cli", "api"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return ApiServer(url, process, log_path)
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the API did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_api(server: ApiServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(10)


@pytest.fixture
def api(
    topology: Settings, tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> Iterator[ApiServer]:
    """The API and one worker over this test's own topics and Redis prefix."""
    start_worker()
    server = start_api(topology, tmp_path)
    yield server
    stop_api(server)
