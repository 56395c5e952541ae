"""Where the time goes: py-spy against the worker processes, folded by leaf function.

`Profiler` runs `py-spy record --format raw --threads --nonblocking` on each
worker for the duration of a fan-out; `summarize` folds the collapsed stacks
by their leaf frame (self time) and by thread name (`MainThread` runs the
faust event loop, `fanout` the transactional fan-out loop).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.testing.processes import WorkerProcess
from streams.testing.processes import py_spy as find_py_spy

from .procs import thread_cpu

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def py_spy() -> str:
    """The py-spy binary (`streams.testing.processes.py_spy`); --profile needs it."""
    found = find_py_spy()
    if found is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


class Profiler:
    """py-spy recorders attached to running processes until `stop`."""

    def __init__(self, out_dir: Path, rate: int = 97) -> None:
        self.out_dir = out_dir
        self.rate = rate
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def attach(self, name: str, pid: int) -> None:
        raw = self.out_dir / f"py-spy-{name}.txt"
        log = (self.out_dir / f"py-spy-{name}.log").open("wb")
        proc = subprocess.Popen(
            [
                *(py_spy(), "record", "--pid", str(pid), "--rate", str(self.rate)),
                *("--format", "raw", "--threads", "--nonblocking", "--output", str(raw)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append((name, proc, raw))

    def stop(self) -> list[Path]:
        """Stop recording (SIGINT makes py-spy write its output) and return the raw files."""
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _, proc, _ in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return [raw for _, _, raw in self.procs if raw.exists()]


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path.split("/work/main/", 1)[-1]


def leaf_name(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (to/file.py)`: a function, whatever its line."""
    found = _FRAME.match(frame.strip())
    if found is None:
        return frame.strip()
    return f"{found.group('func')} ({_short(found.group('file'))})"


# Which part of the product a stack belongs to: the first marker found in it.
STAGES = (
    ("emit_pages (streams/aggregate/release.py", "aggregate: cutting the job into pages"),
    ("FanoutLoop._fan_out", "fan-out: building and producing the sends"),
    ("FanoutLoop", "fan-out: consuming pages, transactions"),
    ("streams/aggregate/progress.py", "aggregate: folding page progress"),
    ("streams/aggregate/reports.py", "delivery fold: decoding reports"),
    ("DeliveryFold.read_natively", "delivery fold: decoding reports"),
    ("DeliveryFold.locate", "delivery fold: finding the messages (ids, else the index)"),
    ("DeliveryFold.check", "delivery fold: finding the messages (ids, else the index)"),
    ("DeliveryFold.fold", "delivery fold: folding, message events"),
    ("fold_group (streams/aggregate/fold_codec.py", "delivery fold: folding, message events"),
    ("DeliveryFold.record", "delivery fold: state and Redis views"),
    ("streams/webhooks/", "webhooks: reading events"),
    ("streams/views/", "Redis views"),
)
OTHER = "other (faust, asyncio, timers, metrics)"


@dataclass
class Summary:
    samples: int = 0
    leaves: Counter[str] = field(default_factory=Counter)
    threads: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)

    def top(self, n: int = 15) -> list[tuple[str, float]]:
        return [(name, 100.0 * count / self.samples) for name, count in self.leaves.most_common(n)]

    def details(self, seconds: float, rate: int, top: int = 20) -> dict[str, Any]:
        """What a scenario keeps of its profile (its `profile` detail, which
        docs/benchmarks.md renders)."""
        return {
            "seconds": seconds,
            "samples": self.samples,
            "rate_hz": rate,
            "threads": dict(self.threads),
            "stages": dict(self.stages.most_common()),
            "top": self.top(top),
        }


def summarize(paths: list[Path]) -> Summary:
    """Fold collapsed stacks (`thread (tid);frame;...;leaf count`) by leaf and by thread role."""
    summary = Summary()
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            summary.samples += count
            summary.leaves[leaf_name(frames[-1])] += count
            summary.threads[thread_name(frames[0])] += count
            stage = next((name for marker, name in STAGES if marker in stack), OTHER)
            summary.stages[stage] += count
    return summary


def thread_name(root: str) -> str:
    """`thread (12443): fanout` -> `fanout` (thread ids differ between workers, names do not)."""
    return root.split(": ", 1)[1] if ": " in root else root


def profile_untimed(
    out_dir: Path, workers: Sequence[WorkerProcess], label: str, action: Callable[[], float]
) -> dict[str, Any]:
    """Run `action` (untimed work of the kind a scenario timed; it answers its seconds)
    with py-spy on every worker: the scenario's `profile` detail, with the CPU of each
    thread of the busiest worker meanwhile."""
    profiler = Profiler(out_dir)
    for worker in workers:
        profiler.attach(f"{label}-{worker.worker_id}", worker.pid)
    time.sleep(1.0)  # let py-spy attach before the work comes
    before = {w.worker_id: thread_cpu(w.pid) for w in workers}
    try:
        seconds = action()
    finally:
        paths = profiler.stop()
    threads = {}
    for worker in workers:
        was, now = before[worker.worker_id], thread_cpu(worker.pid)
        threads[worker.worker_id] = {
            name: spent - was.get(name, 0.0) for name, spent in now.items()
        }
    owner = max(threads, key=lambda worker: sum(threads[worker].values()))
    busiest = sorted(threads[owner].items(), key=lambda item: -item[1])[:12]
    return summarize(paths).details(seconds, profiler.rate) | {
        "thread_cpu_seconds": {name: round(spent, 2) for name, spent in busiest}
    }
