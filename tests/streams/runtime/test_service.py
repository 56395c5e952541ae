"""A worker's own thread (the fan-out loop, the webhook dispatcher) that ends before the
worker stops it crashes the worker, which exits with an error for its supervisor to
start it again; one stopped by the worker ends it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

# A worker (mode's, which faust's extends) running one ThreadService whose loop raises,
# returns, or waits to be stopped, as argv[1] says.
WORKER = """
import sys, threading
import mode
from streams.runtime.service import ThreadService

how, stopped = sys.argv[1], threading.Event()

def run():
    if how == "raises":
        raise RuntimeError("the loop failed")
    if how == "waits":
        stopped.wait()

mode.Worker(ThreadService(run, stopped.set, name="loop")).execute_from_commandline()
"""


@pytest.fixture
def worker() -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(how: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER, how],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.mark.parametrize("how", ["raises", "returns"])
def test_a_thread_that_ends_on_its_own_takes_the_worker_down_with_an_error(
    worker: Callable[[str], subprocess.Popen[str]], how: str
) -> None:
    process = worker(how)
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0, output
    assert "the loop thread ended on its own" in output


def test_a_thread_the_worker_stops_ends_it_cleanly(
    worker: Callable[[str], subprocess.Popen[str]],
) -> None:
    process = worker("waits")
    time.sleep(3)
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "ended on its own" not in output
