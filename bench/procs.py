"""What a scenario measures of its processes (started by `streams.testing.processes`):
their sends, the machine's busy share, what their logs complain about, and the
API's own latency histogram.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import httpx

from streams.testing.processes import ApiProcess, WorkerProcess


def sends_counter(worker: WorkerProcess) -> float | None:
    """The worker's `bulkstream_sends_total` from its /metrics (None if it has none)."""
    return counter(worker, "bulkstream_sends_total")


def counter(worker: WorkerProcess, name: str) -> float | None:
    """A counter of the worker's /metrics (None if it has none, or does not answer)."""
    return counter_in(metrics_text(worker), name)


def counter_in(text: str, name: str) -> float | None:
    """A counter of a /metrics text (None if it has none)."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def counters_by_label_in(text: str, name: str, **where: str) -> dict[str, float]:
    """A counter of a /metrics text by the value of its one label left free: the
    samples whose other labels have the values `where` gives."""
    found = {}
    for sample in re.finditer(rf"^{re.escape(name)}\{{([^}}]*)\}} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', sample.group(1)))
        free = [value for label, value in labels.items() if label not in where]
        if len(free) == 1 and all(labels.get(k) == v for k, v in where.items()):
            found[free[0]] = float(sample.group(2))
    return found


def metrics_text(worker: WorkerProcess) -> str:
    """The worker's /metrics text ("" if it does not answer)."""
    try:
        return httpx.get(f"{worker.metrics_url(5)}/metrics", timeout=5).text
    except (httpx.HTTPError, AssertionError):
        return ""


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


def busy_fraction(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Share of all cores busy between two `machine_busy` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of a live process's threads so far, by thread name
    (RocksDB's background threads are `rocksdb:low`/`rocksdb:high`, librdkafka's `rdk:*`)."""
    ticks = os.sysconf("SC_CLK_TCK")
    by_name: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        name = _NUMBERS.sub("#", name)
        by_name[name] = by_name.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return by_name


def settle(quiet: float = 0.25, window: float = 1.0, patience: float = 90.0) -> float:
    """Wait until the machine's cores are busy less than `quiet` over a `window` (the
    last scenario's broker, Redis and disk work done), at most `patience` seconds;
    the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < patience:
        before = machine_busy()
        time.sleep(window)
        if busy_fraction(before, machine_busy()) < quiet:
            break
    return time.monotonic() - started


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


def get_latency_buckets(api: ApiProcess) -> dict[float, float]:
    """The API's own histogram of `GET /bulk/{id}` answers (200): upper bound -> count."""
    text = httpx.get(f"{api.metrics_url()}/metrics", timeout=5).text
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


_ANSWERS = "bulkstream_api_job_view_answers_total{"


def get_job_view_answers(api: ApiProcess) -> dict[str, float]:
    """The API's count of `GET /bulk/{id}` answers by source: `copy` or `redis`."""
    text = httpx.get(f"{api.metrics_url()}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(_ANSWERS):
            labels, _, count = line[len(_ANSWERS) :].rpartition("} ")
            out[labels.split('"')[1]] = float(count)
    return out
