"""A worker's process-wide tuning (malloc and the garbage collector), checked in
a fresh interpreter so that this test process keeps its own settings."""

from __future__ import annotations

import subprocess
import sys

from streams.ops.worker import GC_THRESHOLD


def _in_fresh_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_tune_gc_freezes_what_start_up_made_and_raises_the_young_threshold() -> None:
    out = _in_fresh_python(
        "import gc; from streams.ops.worker import tune_gc; tune_gc(); "
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 10_000)"
    )
    assert out == f"{GC_THRESHOLD} True"


def test_tune_malloc_is_taken_by_glibc() -> None:
    out = _in_fresh_python("from streams.ops.worker import tune_malloc; print(tune_malloc())")
    assert out == "True"
