"""The harness's processes: one that does not exit in time after SIGTERM leaves its
threads' stacks at the end of its log before it is killed, so a hang seen once in a
test, the bench or chaos says where it was; an API whose port another process took
before it could bind it is started on another, never taken for the other process;
`bulkstream api` on a port in use exits; and a wait on a growing count fails only
once the count stays put."""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

import httpx
import pytest

from streams.metrics import Health, serve
from streams.settings import Settings
from streams.testing.processes import (
    API_HEALTHY,
    PORT_TAKEN,
    ApiProcess,
    BulkstreamProcess,
    WorkerProcess,
    py_spy,
    run_state,
    wait_for,
    wait_growing,
)


def test_a_worker_that_does_not_exit_leaves_its_stacks_in_its_log(
    settings: Settings, tmp_path: Path
) -> None:
    assert py_spy() is not None  # a development dependency (pyproject.toml)
    worker = WorkerProcess(settings, "hung", tmp_path, "fanout").start()
    # Its fan-out loop running, so its SIGTERM handler is installed: a SIGTERM before
    # that, pending with the SIGSTOP, is taken first (the lower number) and kills it.
    wait_for(lambda: b"joins group" in worker.log() or None, 120, "the fan-out loop to run")
    os.kill(worker.pid, signal.SIGSTOP)  # hung: it runs nothing, its SIGTERM handler neither
    wait_for(lambda: run_state(worker.pid) == "T" or None, 30, "the worker to be stopped")
    worker.stop_timeout = 2.0
    assert worker.stop() is None  # killed
    log = worker.log().decode(errors="replace")
    assert "worker hung did not exit within 2 s of SIGTERM; its threads (py-spy dump):" in log
    assert "streams/fanout/loop.py" in log  # where its fan-out loop was


def test_an_api_whose_port_was_taken_meanwhile_starts_on_another(
    settings: Settings, tmp_path: Path
) -> None:
    """In CI a worker's metrics server took the port picked for the API: its /healthz
    answered for the API, and the test's POST /bulk got its 501."""
    api = ApiProcess(settings, tmp_path)
    taken = api.port
    stop = serve("127.0.0.1", taken, Health())  # as a worker's metrics server
    try:
        api.start()
        assert api.port != taken
        assert httpx.get(f"{api.url}/healthz", timeout=5).content == API_HEALTHY
        assert PORT_TAKEN in api.log_path.read_bytes().lower()  # the first try
    finally:
        api.stop()
        stop()


def test_an_api_whose_port_is_taken_exits(settings: Settings, tmp_path: Path) -> None:
    """It once waited for ever instead (its result wake-ups' task, under uvloop, lost the
    cancellation that ends it)."""
    api = ApiProcess(settings, tmp_path)
    stop = serve("127.0.0.1", api.port, Health())
    try:
        BulkstreamProcess.start(api)  # not ApiProcess.start, which would move it
        assert api.proc is not None
        assert api.proc.wait(30) != 0
        assert PORT_TAKEN in api.log().lower()
    finally:
        api.kill()
        stop()


def test_a_wait_on_a_growing_count_lasts_while_it_grows_and_fails_once_it_stays_put() -> None:
    # 40 polls of 10 ms (0.4 s) while the count grows by one, longer than the stall.
    growing = itertools.count()
    assert wait_growing(lambda: next(growing), 40, stall=0.05, what="g", every=0.01) == 40
    stuck = iter([1, 2, 3])
    with pytest.raises(AssertionError, match=r"^the count: 3 of 10, none more for 0\.1 s$"):
        wait_growing(lambda: next(stuck, 3), 10, stall=0.1, what="the count", every=0.01)
