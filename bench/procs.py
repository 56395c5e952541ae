"""The processes a scenario starts: real `bulkstream worker`s and `bulkstream api`.

Workers are `tests.streams.harness.WorkerProcess` (a `python -m streams.ops.cli
worker` each, its log in the run's log folder). Also: waiting until they
are ready, their CPU time from /proc, and what their logs complain about.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import httpx

from streams.settings import Settings
from tests.streams.harness import WorkerProcess, settings_env

from .env import REPO, TENANT

_TICKS = os.sysconf("SC_CLK_TCK")


def start_workers(settings: Settings, count: int, log_dir: Path, name: str) -> list[WorkerProcess]:
    """`count` workers running every stage, ready (both groups joined) when this returns."""
    workers = [
        WorkerProcess(settings, f"{name}-{n}", log_dir, "all").start() for n in range(1, count + 1)
    ]
    wait_ready(workers)
    return workers


_FANOUT = re.compile(rb"fan-out (\S+): partitions (assigned|revoked) \[([0-9, ]*)\]")


def fanout_partitions(worker: WorkerProcess) -> set[int] | None:
    """The fan-out partitions a worker holds now, per its log (None: none assigned yet)."""
    last = None
    for found in _FANOUT.finditer(worker.log_path.read_bytes()):
        last = found
    if last is None or last.group(2) == b"revoked":
        return None
    return {int(p) for p in last.group(3).split(b",") if p.strip()}


def fanout_settled(workers: list[WorkerProcess]) -> bool:
    """Every fan-out partition held by exactly one worker, and every worker holding some."""
    partitions = workers[0].settings.partitions
    held = [fanout_partitions(w) for w in workers]
    if any(h is None for h in held):
        return False
    sets = [h for h in held if h is not None]
    everyone = len(workers) > partitions or all(sets)
    return everyone and sum(map(len, sets)) == partitions == len(set().union(*sets))


def wait_ready(workers: list[WorkerProcess], timeout: float = 180) -> None:
    """Until every worker answers /readyz with 200 and the fan-out group has settled (each
    partition assigned to one of them), twice in a row 1 s apart.

    /readyz says the fan-out loop joined its group, not that the group's rebalance is
    over: a run right after it would wait for that rebalance."""
    urls = [w.metrics_url(timeout) for w in workers]
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 2:
        for worker in workers:
            if not worker.alive():
                raise AssertionError(f"worker {worker.worker_id} died:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"workers not ready after {timeout:.0f} s")
        try:
            ready = all(httpx.get(f"{u}/readyz", timeout=2).status_code == 200 for u in urls)
        except httpx.HTTPError:
            ready = False
        ready = ready and fanout_settled(workers)
        streak = streak + 1 if ready else 0
        time.sleep(1.0)


def stop_all(workers: Iterable[WorkerProcess]) -> None:
    for worker in workers:
        worker.stop()


def sends_counter(worker: WorkerProcess) -> float | None:
    """The worker's `bulkstream_sends_total` from its /metrics (None if it has none)."""
    try:
        text = httpx.get(f"{worker.metrics_url(5)}/metrics", timeout=5).text
    except (httpx.HTTPError, AssertionError):
        return None
    found = re.search(r"^bulkstream_sends_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


def busy_fraction(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Share of all cores busy between two `machine_busy` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


_LEVEL = re.compile(r"\[(WARNING|ERROR|CRITICAL)\] (.*)")
_NUMBERS = re.compile(r"0x[0-9a-f]+|\d+")


def log_findings(paths: Iterable[Path], limit: int = 8) -> list[str]:
    """Warnings, errors and tracebacks in process logs, grouped by message shape."""
    shapes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            found = _LEVEL.search(line)
            if found is None:
                if line.startswith("Traceback"):
                    shapes[f"{path.name}: Traceback"] += 1
                continue
            level, message = found.groups()
            shape = f"{path.name}: {level} {_NUMBERS.sub('N', message)[:140]}"
            shapes[shape] += 1
            examples.setdefault(shape, message[:200])
    return [f"{n}x {shape}" for shape, n in shapes.most_common(limit)]


_BUCKET = "bulkstream_http_request_duration_seconds_bucket{"
_LE = re.compile(r'le="([^"]+)"')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ApiProcess:
    """A real `bulkstream api` process over a scenario's settings, with one tenant key."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.key = secrets.token_urlsafe(24)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"api-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ApiProcess:
        env = settings_env(self.settings, api_port=self.port, api_keys=f"{TENANT}:{self.key}")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.ops.cli", "api", "--host", "127.0.0.1"],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the API did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get_latency_buckets(self) -> dict[float, float]:
        """The API's own histogram of `GET /bulk/{id}` answers (200): upper bound -> count."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        out: dict[float, float] = {}
        for line in text.splitlines():
            if not line.startswith(_BUCKET):
                continue
            labels, _, count = line[len(_BUCKET) :].rpartition("} ")
            bound = _LE.search(labels)
            if bound is None:
                continue
            wanted = ('method="GET"', 'code="200"', "job_id}")
            if all(w in labels for w in wanted) and "/users" not in labels:
                le = float(bound.group(1))
                out[le] = out.get(le, 0.0) + float(count)
        return out

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
