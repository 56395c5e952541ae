"""The harness's processes: one that does not exit in time after SIGTERM leaves its
threads' stacks at the end of its log before it is killed, so a hang seen once in a
test, the bench or chaos says where it was."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from streams.settings import Settings
from streams.testing.processes import WorkerProcess, py_spy, run_state, wait_for


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
