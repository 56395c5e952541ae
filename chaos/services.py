"""The local services under fault: stop, start, pause and resume Kafka and Redis.

They are the processes `make up` started (deploy/local/services.sh keeps
their pids in `.local/`); starting again goes through the same script.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "local" / "services.sh"
STATE = Path(os.environ.get("BULKSTREAM_LOCAL_DIR", ROOT / ".local"))
PIDS = {"kafka": STATE / "kafka" / "kafka.pid", "redis": STATE / "redis" / "redis.pid"}


def pid(service: str) -> int:
    """The service's process: from `make up`'s pid file, or (Redis) from Redis itself."""
    path = PIDS[service]
    if path.exists():
        return int(path.read_text().strip())
    if service == "redis":  # a local Redis this checkout did not start, e.g. another clone's
        info = redis.Redis.from_url(Settings().redis_url).info("server")
        return int(info["process_id"])
    raise RuntimeError(f"{service} was not started by `make up` (no {path})")


def stop(service: str, timeout: float = 120) -> None:
    """Stop a service cleanly (SIGTERM) and wait until its process is gone."""
    target = pid(service)
    os.kill(target, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(target, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{service} (pid {target}) did not stop in {timeout:.0f} s")


def start() -> None:
    """Start whatever of the stack is not running, and wait until it answers."""
    python = ROOT / ".venv" / "bin" / "python"
    subprocess.run(
        [str(SCRIPT), "up"],
        check=True,
        env={**os.environ, "PYTHON": str(python)},
        stdout=subprocess.DEVNULL,
    )


def pause(service: str) -> None:
    os.kill(pid(service), signal.SIGSTOP)


def resume(service: str) -> None:
    os.kill(pid(service), signal.SIGCONT)
