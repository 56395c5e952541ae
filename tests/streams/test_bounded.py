"""Calls with a deadline of our own: results, errors, and a call that never returns."""

from __future__ import annotations

import threading
import time

import pytest

from streams.errors import CallStuck
from streams.kafka.bounded import BoundedCalls


def test_a_call_gives_its_result_or_its_error() -> None:
    calls = BoundedCalls("test-calls")
    try:
        assert calls.call(lambda: 42, 5, "answer") == 42
        with pytest.raises(ZeroDivisionError):
            calls.call(lambda: 1 / 0, 5, "division")
        assert calls.call(lambda: "again", 5, "after an error") == "again"
    finally:
        calls.close()


def test_a_call_that_never_returns_is_given_up_on_in_time() -> None:
    never = threading.Event()
    calls = BoundedCalls("test-stuck")
    started = time.monotonic()
    with pytest.raises(CallStuck, match="blocked call did not return in 1 s"):
        calls.call(never.wait, 1, "blocked call")
    assert time.monotonic() - started < 3
    calls.close()
    stuck = [t for t in threading.enumerate() if t.name == "test-stuck"]
    assert stuck
    assert all(t.daemon for t in stuck)  # it cannot hold up the process's exit
    # A new runner works while the old one is still stuck.
    fresh = BoundedCalls("test-fresh")
    try:
        assert fresh.call(lambda: "fine", 5, "fresh call") == "fine"
    finally:
        fresh.close()
    never.set()  # let the stuck thread end with the test
    for thread in stuck:
        thread.join(5)
        assert not thread.is_alive()


def test_close_ends_the_thread() -> None:
    calls = BoundedCalls("test-close")
    calls.call(lambda: None, 5, "nothing")
    calls.close()
    for thread in [t for t in threading.enumerate() if t.name == "test-close"]:
        thread.join(5)
        assert not thread.is_alive()
