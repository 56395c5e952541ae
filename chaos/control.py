"""The job-control scenario: pause, resume and cancel of large jobs while workers are
SIGKILLed, each request in flight when a worker dies.

Judged at every settled answer, not only at the end: when a pause or cancel
answers, the job's `enqueued` must equal the sends a read_committed reader
finds on the topic, and stay so (a worker killed after it changes nothing);
the paused job then completes with every user sent exactly once, and the
canceled one has sent exactly `enqueued`, each once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from chaos.run import Run, Tally, timed
from streams.settings import Settings
from streams.testing.topics import read_topic

HOLD_SECONDS = 3.0  # how long a settled answer is watched for sends that should not come
# Small pages and a small window: a job long enough for every kill and request to land
# in its fan-out, and many transactions for the kills to cut through.
PAGE_SIZE = 50
WINDOW_PAGES = 32


def control(base: Settings, logs: Path, users: int, rounds: int) -> Tally:
    """Job A: SIGKILL during its fan-out, pause (a worker SIGKILLed as it is asked),
    SIGKILL while paused, resume, SIGKILL, completes. Job B, the same size: SIGKILL
    during its fan-out, cancel (a worker SIGKILLed as it is asked), SIGKILL after."""
    tally = Tally("pause, resume and cancel under SIGKILL", users)
    settings = base.model_copy(
        update={"fanout_page_size": PAGE_SIZE, "fanout_window_pages": WINDOW_PAGES}
    )
    run = Run(settings, "control", logs, seed=7)
    started = time.monotonic()
    try:
        for worker_id in ("w1", "w2"):
            run.start_worker(worker_id)
        api = run.start_api()
        with api.client() as http:
            paused = run.create()
            canceled = run.create()
            run.ingest(paused, users)
            run.ingest(canceled, users)

            run.client.run(paused)
            run.wait_enqueued(paused, users // 5)
            tally.faults.append(f"job A fan-out: SIGKILL {run.kill_random_worker()}")
            answer = _asked_while_killed(run, http, paused, "pause", tally)
            tally.checks["pause answered PAUSED"] = answer.get("status") == "PAUSED"
            _settled(run, tally, paused, answer, "pause")
            tally.faults.append(f"job A paused: SIGKILL {run.kill_random_worker()}")
            _still(run, tally, paused, answer, "pause")
            resumed = _post(http, f"/bulk/{paused}/resume", tally)
            tally.checks["resume answered"] = resumed.get("status") in ("PROCESSING", "COMPLETED")
            run.wait_enqueued(paused, answer["enqueued"] + (users - answer["enqueued"]) // 3)
            tally.faults.append(f"job A resumed: SIGKILL {run.kill_random_worker()}")

            run.client.run(canceled)
            run.wait_enqueued(canceled, users // 5)
            tally.faults.append(f"job B fan-out: SIGKILL {run.kill_random_worker()}")
            answer = _asked_while_killed(run, http, canceled, "cancel", tally)
            tally.checks["cancel answered CANCELED"] = answer.get("status") == "CANCELED"
            tally.checks["received = enqueued + failures + canceled"] = answer.get(
                "received"
            ) == answer.get("enqueued", 0) + answer.get("failures", 0) + answer.get("canceled", 0)
            _settled(run, tally, canceled, answer, "cancel")
            tally.faults.append(f"job B canceled: SIGKILL {run.kill_random_worker()}")
            _still(run, tally, canceled, answer, "cancel")
            tally.notes.append(
                f"job B canceled at {answer.get('enqueued', 0):,} sends, "
                f"{answer.get('canceled', 0):,} never sent"
            )
        run.finish(tally, paused, also={canceled: answer.get("enqueued", -1)})
    finally:
        run.close()
        timed(tally, started)
    return tally


def _asked_while_killed(
    run: Run, http: httpx.Client, job_id: str, verb: str, tally: Tally
) -> dict[str, Any]:
    """POST the verb and SIGKILL a worker while it is on its way; the job view answered."""
    answered: dict[str, Any] = {}

    def ask() -> None:
        answered.update(_post(http, f"/bulk/{job_id}/{verb}", tally))

    asking = threading.Thread(target=ask)
    asking.start()
    time.sleep(0.05)
    tally.faults.append(f"{verb} in flight: SIGKILL {run.kill_random_worker()}")
    asking.join(300)
    return answered


def _post(http: httpx.Client, path: str, tally: Tally) -> dict[str, Any]:
    """POST as Courier's SDKs do: a 503 (with Retry-After) retried with the same
    Idempotency-Key; any other 5xx counted."""
    key = uuid.uuid4().hex
    for _ in range(10):
        answer = http.post(path, headers={"Idempotency-Key": key}, timeout=120)
        if answer.status_code == 503:
            tally.notes.append(f"{path}: 503, retried with the same Idempotency-Key")
            time.sleep(float(answer.headers.get("retry-after", "1")))
            continue
        if answer.status_code >= 500:
            tally.http_5xx += 1
        if answer.status_code != 200:
            tally.checks[f"{path} answered 200"] = False
            return {}
        job: dict[str, Any] = answer.json()["job"]
        return job
    tally.checks[f"{path} answered within 10 tries"] = False
    return {}


def _sends(run: Run, job_id: str) -> Counter[str]:
    return Counter(
        value["messageId"]
        for _, value, _ in read_topic(run.settings, run.settings.topic_sends)
        if value["jobId"] == job_id
    )


def _settled(run: Run, tally: Tally, job_id: str, answer: dict[str, Any], verb: str) -> None:
    sends = _sends(run, job_id)
    exact = sum(sends.values()) == len(sends) == answer.get("enqueued")
    tally.checks[f"{verb}: the answer's enqueued = the sends on the topic, each once"] = exact
    tally.notes.append(
        f"{verb} answered at {answer.get('enqueued', 0):,} enqueued; "
        f"{sum(sends.values()):,} sends on the topic"
    )


def _still(run: Run, tally: Tally, job_id: str, answer: dict[str, Any], verb: str) -> None:
    """After a worker was killed, the settled job sends nothing more and its view holds."""
    time.sleep(HOLD_SECONDS)
    sends = _sends(run, job_id)
    job = run.client.job(job_id)
    held = job is not None and job.enqueued == answer.get("enqueued") == sum(sends.values())
    tally.checks[f"{verb}: nothing more sent after a SIGKILL, {HOLD_SECONDS:.0f} s"] = held
