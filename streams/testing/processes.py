"""The processes of a stack: real `bulkstream worker`s, `bulkstream api` and
`bulkstream deliver`, one spawner.

Each is `python -m streams.ops.cli <command>` with the settings passed in its
environment (`settings_env`), its output in a log file. Workers are watched:
`wait_for` fails at once, with the worker's log, when one that should be
running died. Also: waiting until a group of them is ready, stopping them
all (one that does not stop in time leaves its threads' stacks in its log),
and the CPU time and peak memory of a live process from /proc.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx

from streams.settings import Settings

T = TypeVar("T")

# The API's tenants and their keys, unless a caller names its own.
KEYS = {"acme": "sk-acme-0123456789", "globex": "sk-globex-9876543210"}

_METRICS_AT = re.compile(rb'metrics, health and readiness on (http://[^\s"]+)')
_FANOUT = re.compile(rb"fan-out (\S+): partitions \w+ \[[0-9, ]*\]; holds \[([0-9, ]*)\]")
_TICKS = os.sysconf("SC_CLK_TCK")


class NotReady(AssertionError):
    """A process died, or was not ready in time; the message says which (with its log)."""


def settings_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment that makes a `bulkstream` process use these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKSTREAM_")}
    return env | settings.env(**overrides)


def cli(
    settings: Settings, *args: str, stdin: str = "", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`bulkstream <args>` as its own process, with these settings; its exit and output."""
    return subprocess.run(
        [sys.executable, "-m", "streams.ops.cli", *args],
        env=settings_env(settings),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def py_spy() -> str | None:
    """The py-spy binary beside this interpreter (`pip install py-spy`), or on the PATH."""
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class BulkstreamProcess:
    """`python -m streams.ops.cli <args>` over `settings` (with `overrides`), its output
    appended to `log_path`."""

    name = "process"
    stop_timeout = 60.0

    def __init__(
        self, settings: Settings, args: list[str], log_path: Path, **overrides: Any
    ) -> None:
        self.settings = settings
        self.args = args
        self.log_path = log_path
        self.overrides = overrides
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self) -> Self:
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.ops.cli", *self.args],
                env=settings_env(self.settings, **self.overrides),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_alive(self) -> None:
        if self.proc is not None and not self.alive():
            raise NotReady(f"{self.name} exited with {self.returncode}:\n{self.log_tail()}")

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator does; `stop` waits for the exit."""
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no goodbye."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code, or None if it had to be killed (or never ran).
        One that did not exit in time gets its threads' stacks at the end of its log
        before it is killed (`dump_stacks`): the log says where it hung."""
        if self.proc is None:
            return None
        self.terminate()
        try:
            self.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.dump_stacks(f"did not exit within {self.stop_timeout:.0f} s of SIGTERM")
            self.proc.kill()
            self.proc.wait(30)
            return None
        return self.proc.returncode

    def dump_stacks(self, why: str) -> None:
        """Append every thread's stack (`py-spy dump`, when py-spy is installed) to the log."""
        spy = py_spy()
        if spy is None or not self.alive():
            return
        try:
            dumped = subprocess.run(
                [spy, "dump", "--nonblocking", "--pid", str(self.pid)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            text = f"py-spy dump failed: {exc}\n"
        else:
            text = dumped.stdout + dumped.stderr
        with self.log_path.open("a") as log:
            log.write(f"\n--- {self.name} {why}; its threads (py-spy dump):\n{text}")

    def log(self) -> bytes:
        """This run's log: what it wrote since `start` (a log file may hold earlier runs)."""
        if not self.log_path.exists():
            return b""
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def served_at(self) -> str | None:
        """Where it serves /metrics, /healthz and /readyz, if known yet."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether it answers /readyz with 200 now."""
        url = self.served_at()
        try:
            return url is not None and httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


# Workers that should be running: waiting fails at once, with the log, when one died.
WATCHED: list[WorkerProcess] = []


class WorkerProcess(BulkstreamProcess):
    """A real `bulkstream worker --stage <stage>`; its log is `worker-<id>.log` in `log_dir`."""

    def __init__(
        self, settings: Settings, worker_id: str, log_dir: Path, stage: str = "all"
    ) -> None:
        super().__init__(
            settings,
            ["worker", "--stage", stage],
            log_dir / f"worker-{worker_id}.log",
            worker_id=worker_id,
        )
        self.worker_id = worker_id
        self.stage = stage
        self.name = f"worker {worker_id}"

    def start(self) -> Self:
        super().start()
        WATCHED.append(self)
        return self

    def kill(self) -> None:
        if self in WATCHED:
            WATCHED.remove(self)
        super().kill()

    def stop(self) -> int | None:
        if self in WATCHED:
            WATCHED.remove(self)
        return super().stop()

    def served_at(self) -> str | None:
        found = _METRICS_AT.search(self.log())
        return found.group(1).decode() if found else None

    def metrics_url(self, timeout: float = 60) -> str:
        """Where this worker serves /metrics, /healthz and /readyz (from its log)."""
        return wait_for(self.served_at, timeout, f"worker {self.worker_id} to serve its metrics")

    def fanout_partitions(self) -> set[int] | None:
        """The fan-out partitions it holds now, restored, per its log (None: none yet)."""
        last = None
        for found in _FANOUT.finditer(self.log()):
            last = found
        if last is None:
            return None
        return {int(p) for p in last.group(2).split(b",") if p.strip()}


# What the API's /healthz answers (a worker's metrics server answers `ok`).
API_HEALTHY = b'{"status":"ok"}'
# Ports an API is started on at most, when another process took the one picked; what
# its log says then (uvicorn's words).
PORT_ATTEMPTS = 3
PORT_TAKEN = b"address already in use"


class ApiProcess(BulkstreamProcess):
    """A real `bulkstream api` on a free port of 127.0.0.1, with `keys` (tenant -> key);
    its log is `api-<port>.log` in `log_dir`."""

    name = "the API"
    stop_timeout = 30.0

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        keys: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> None:
        self.keys = dict(KEYS if keys is None else keys)
        port = free_port()
        super().__init__(
            settings,
            ["api"],
            log_dir / f"api-{port}.log",
            **{
                "api_host": "127.0.0.1",
                "api_keys": ",".join(f"{tenant}:{key}" for tenant, key in self.keys.items()),
                **overrides,
            },
        )
        self._use_port(port)

    def _use_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.overrides["api_port"] = port

    def start(self, timeout: float = 60) -> Self:
        """Start it and wait until it answers /healthz (up; /readyz also needs the services).

        Its port was free when picked, not held since: another process may bind it first
        (a worker's metrics server, given a free port by the kernel), and then answers
        there while the API cannot serve. So only the API's own answer counts, and an API
        that found its port taken is stopped and started again on another
        (`PORT_ATTEMPTS` in all)."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            super().start()
            if self._answers(timeout):
                return self
            if attempt == PORT_ATTEMPTS or not self._port_taken():
                break
            self.kill()
            self._use_port(free_port())
        raise NotReady(f"the API did not start:\n{self.log_path.read_text()[-3000:]}")

    def _port_taken(self) -> bool:
        return PORT_TAKEN in self.log().lower()

    def _answers(self, timeout: float) -> bool:
        """Whether the API answers its /healthz within `timeout`; False once it exited or
        found its port taken."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and not self._port_taken():
            try:
                answer = httpx.get(f"{self.url}/healthz", timeout=1)
                if answer.status_code == 200 and answer.content == API_HEALTHY:
                    return True
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return False

    def served_at(self) -> str | None:
        return self.url

    def metrics_url(self) -> str:
        """Where it serves /metrics (beside the Bulk API)."""
        return self.url

    def client(self, tenant: str | None = "acme", **headers: str) -> httpx.Client:
        """An HTTP client of the API, with `tenant`'s key (None: without a key)."""
        if tenant is not None:
            headers["Authorization"] = f"Bearer {self.keys[tenant]}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


class DeliverProcess(BulkstreamProcess):
    """A real `bulkstream deliver --http <url> [args]` (the reference delivery worker);
    its log is `deliver-<name>.log` in `log_dir`."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        log_dir: Path,
        name: str = "d1",
        args: Sequence[str] = (),
    ) -> None:
        super().__init__(
            settings, ["deliver", "--http", url, *args], log_dir / f"deliver-{name}.log"
        )
        self.name = f"deliver {name}"

    def served_at(self) -> str | None:
        found = _METRICS_AT.search(self.log())
        return found.group(1).decode() if found else None

    def joined(self) -> bool:
        """Whether it has joined its group (partitions assigned, none maybe), per its log."""
        return b": partitions assigned" in self.log()


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    """Poll `probe` until it gives a true value; fail at once if a watched worker died."""
    deadline = time.monotonic() + timeout
    while True:
        for worker in WATCHED:
            if not worker.alive():
                WATCHED.remove(worker)
                raise NotReady(f"worker {worker.worker_id} died:\n{worker.log_tail()}")
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def wait_growing(
    count: Callable[[], int], wanted: int, stall: float, what: str, every: float = 0.2
) -> int:
    """Poll `count` until it reaches `wanted`; fail only once it stayed put for `stall`
    seconds, however long the whole takes (a slow machine is not a stuck one)."""
    last, since = -1, time.monotonic()
    while True:
        value = count()
        if value >= wanted:
            return value
        now = time.monotonic()
        if value != last:
            last, since = value, now
        elif now - since > stall:
            raise AssertionError(f"{what}: {value:,} of {wanted:,}, none more for {stall:g} s")
        time.sleep(every)


def start_workers(
    settings: Settings, count: int, log_dir: Path, name: str, *, ready: bool = True
) -> list[WorkerProcess]:
    """`count` workers of every stage, `<name>-1`..`<name>-<count>`; ready when this
    returns (every one's /readyz, the fan-out group settled) unless `ready=False`."""
    workers = [WorkerProcess(settings, f"{name}-{n}", log_dir).start() for n in range(1, count + 1)]
    if ready:
        wait_ready(workers, settled=True)
    return workers


def fanout_settled(workers: list[WorkerProcess]) -> bool:
    """Every fan-out partition held by exactly one worker, and every worker holding some."""
    partitions = workers[0].settings.partitions
    held = [w.fanout_partitions() for w in workers]
    if any(h is None for h in held):
        return False
    sets = [h for h in held if h is not None]
    everyone = len(workers) > partitions or all(sets)
    return everyone and sum(map(len, sets)) == partitions == len(set().union(*sets))


def wait_ready(
    processes: Sequence[BulkstreamProcess], timeout: float = 180, settled: bool = False
) -> None:
    """Until every process answers /readyz with 200 in the same round.

    `settled`: and the fan-out group of the workers among them has settled (each
    partition held by one of them), twice in a row 1 s apart. A worker's /readyz
    says its own fan-out holds an assignment; the first ones to start hold every
    partition until the last one joins."""
    for process in processes:
        process.ensure_alive()
        if isinstance(process, WorkerProcess):
            process.metrics_url(timeout)
    workers = [p for p in processes if isinstance(p, WorkerProcess)]
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < (2 if settled else 1):
        for process in processes:
            process.ensure_alive()
        if time.monotonic() > deadline:
            waiting = [p.name for p in processes if not p.ready()]
            raise NotReady(f"not ready after {timeout:.0f} s: {', '.join(waiting) or 'fan-out'}")
        ready = all(p.ready() for p in processes)
        ready = ready and (not settled or not workers or fanout_settled(workers))
        streak = streak + 1 if ready else 0
        if streak < (2 if settled else 1):
            time.sleep(1.0 if settled else 0.5)


def stop_all(processes: Iterable[BulkstreamProcess]) -> None:
    """SIGTERM every process at once, then wait for each (killing what does not stop)."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        process.stop()


def _stat(pid: int) -> list[str]:
    """The fields of a live process's /proc stat after its name (the state first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS


def run_state(pid: int) -> str:
    """A live process's state letter (R running, S sleeping, T stopped, ...)."""
    return _stat(pid)[0]


def peak_rss_kib(pid: int) -> int:
    """The peak resident set size of a live process (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")
