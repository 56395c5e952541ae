"""The delivery-outcomes scenario: a job's sends delivered by the reference delivery
worker to a provider that fails some of them, the reports folded back, and the
tenant's webhooks sent, while workers and the delivery worker are SIGKILLed and
Redis is paused (SIGSTOP) for longer than a worker's Redis time-out, the fold
writing its views meanwhile: the workers wait it out, none exits.

Judged at the end: the job's delivery counts are exact (every message once, in
the state its last report says: FAILED for the messages the provider always
refuses, SENT for the rest), every message event reached the topic at least
once, and the webhook endpoint received at least once a `message.failed` for
each failed message and the job's `job.completed`, each with a valid
signature, and each `message.failed` event under one `webhook-id` however
often a replayed fold published it; plus the run's usual checks (every send
once, exact counters).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from chaos import services
from chaos.run import Run, Tally, timed
from streams.settings import Settings
from streams.testing.hooks import WebhookReceiver
from streams.testing.processes import DeliverProcess, wait_for
from streams.testing.receiver import Receiver, Rules, hashed_out
from streams.testing.topics import read_topic

FAIL_EVERY = 20  # about one message in 20 is always refused by the provider
# Redis paused this long while reports are folded: twice a worker's Redis socket
# time-out (5 s, `streams.views.connection.patient_redis`), so a write in flight times out
# and is retried, at least once.
REDIS_PAUSE_SECONDS = 10.0
# What a worker logs for a packed write to Redis it sends again (`send_packed`).
RESENT = b"commands again"
DELIVER = ["--concurrency", "64", "--attempts", "2", "--backoff", "0.05"]


def outcomes(base: Settings, logs: Path, users: int, rounds: int) -> Tally:
    tally = Tally("delivery outcomes and webhooks under SIGKILL and a Redis pause", users)
    settings = base.model_copy(
        update={"webhooks_allow_private": True, "webhook_retry_first_seconds": 0.5}
    )
    run = Run(settings, "outcomes", logs, seed=11)
    provider = Receiver(Rules(fail_every=FAIL_EVERY)).start()
    hooks = WebhookReceiver().start()
    deliver = DeliverProcess(run.settings, provider.url, run.log_dir, args=DELIVER)
    started = time.monotonic()
    try:
        for worker_id in ("w1", "w2"):
            run.start_worker(worker_id)
        api = run.start_api()
        with api.client() as http:
            answer = http.post(
                "/webhooks", json={"url": hooks.url, "events": ["job.*", "message.failed"]}
            )
            tally.checks["webhook endpoint registered"] = answer.status_code == 201
            hooks.secret = answer.json().get("secret", "")
            job_id = run.create()
            run.ingest(job_id, users)
            deliver.start()
            run.client.run(job_id)
            for i in range(rounds):
                _wait_reported(http, job_id, users * (i + 1) // (rounds + 2))
                tally.faults.append(f"reports flowing: SIGKILL {run.kill_random_worker()}")
            _pause_redis(run, tally, http, job_id, users * (2 * rounds + 1) // (2 * rounds + 4))
            deliver.kill()
            tally.faults.append("reports flowing: SIGKILL the delivery worker")
            deliver.start()
            run.finish(tally, job_id)
            _wait_reported(http, job_id, users, timeout=600)
            _judge(run, tally, job_id, http, hooks)
    finally:
        deliver.stop()
        run.close()
        provider.stop()
        hooks.stop()
        timed(tally, started)
    return tally


def _pause_redis(run: Run, tally: Tally, http: Any, job_id: str, reported: int) -> None:
    """Redis stopped once `reported` messages are, while the delivery worker reports on:
    the fold's views wait for it. Judged by every worker alive (the same processes) and
    reports folded after it; noted, how many packed writes of the fold's views timed
    out and went again (`streams.views.connection.send_packed` logs each)."""
    before = {worker_id: worker.pid for worker_id, worker in run.workers.items()}
    resent = sum(worker.log().count(RESENT) for worker in run.workers.values())
    at_pause = _count(_wait_reported(http, job_id, reported))
    services.pause("redis")
    try:
        time.sleep(REDIS_PAUSE_SECONDS)
    finally:
        services.resume("redis")
    answered = time.monotonic()
    tally.faults.append(f"reports flowing: SIGSTOP Redis {REDIS_PAUSE_SECONDS:.0f} s")
    alive = {worker_id: worker.alive() for worker_id, worker in run.workers.items()}
    same = {worker_id: worker.pid for worker_id, worker in run.workers.items()} == before
    tally.checks["every worker waited Redis out (none exited)"] = all(alive.values()) and same
    # As many as are left, if fewer: a small job's reports may all be in by the pause.
    more = min(max(1, tally.users // 20), tally.users - at_pause)
    try:
        _wait_reported(http, job_id, at_pause + more, timeout=120)
        folded = True
    except AssertionError:
        folded = False
    tally.checks[f"{more:,} more messages reported within 120 s of Redis answering"] = folded
    resent = sum(worker.log().count(RESENT) for worker in run.workers.values()) - resent
    tally.notes.append(
        f"Redis paused at {at_pause:,} messages reported; {more:,} more "
        + (f"{time.monotonic() - answered:.1f} s after it answered" if folded else "never")
        + f"; packed view writes timed out and sent again: {resent}"
        + ("" if all(alive.values()) else f"; workers alive after it: {alive}")
    )


def _count(job: dict[str, Any]) -> int:
    return sum((job.get("delivery") or {}).values())


def _wait_reported(http: Any, job_id: str, count: int, timeout: float = 600) -> dict[str, Any]:
    def reported() -> dict[str, Any] | None:
        answer = http.get(f"/bulk/{job_id}")
        if answer.status_code != 200:
            return None
        job: dict[str, Any] = answer.json()["job"]
        return job if _count(job) >= count else None

    return wait_for(reported, timeout, f"{count:,} messages reported", every=0.1)


def _judge(run: Run, tally: Tally, job_id: str, http: Any, hooks: WebhookReceiver) -> None:
    sent = {
        value["messageId"]
        for _, value, _ in read_topic(run.settings, run.settings.topic_sends)
        if value["jobId"] == job_id
    }
    failed = {message for message in sent if hashed_out(message, FAIL_EVERY)}
    expected = {
        state: n for state, n in (("SENT", len(sent) - len(failed)), ("FAILED", len(failed))) if n
    }

    def counted() -> dict[str, int]:
        job = http.get(f"/bulk/{job_id}").json()["job"]
        return {state: n for state, n in (job.get("delivery") or {}).items() if n}

    def settled() -> dict[str, int] | None:
        now = counted()
        return now if now == expected else None

    # Judged once late reports had their time: a send posted again after the delivery
    # worker's kill is reported again, after the counts first added up.
    time.sleep(2.0)
    try:
        delivery = wait_for(settled, 30, "the expected delivery counts")
    except AssertionError:
        delivery = counted()
    tally.checks["delivery counts exact (each message once, in its last state)"] = (
        delivery == expected
    )
    tally.notes.append(f"delivery {delivery}; {len(failed):,} messages always refused")
    events = {
        (value["messageId"], value["status"])
        for _, value, _ in read_topic(run.settings, run.settings.topic_message_events)
        if value["jobId"] == job_id
    }
    tally.checks["a SENT message event for every message"] = {
        message for message, status in events if status == "SENT"
    } >= sent - failed
    failed_events = {message for message, status in events if status == "FAILED"}
    tally.checks["a FAILED message event for every failed message"] = failed_events == failed
    if failed_events != failed:
        missing, extra = sorted(failed - failed_events), sorted(failed_events - failed)
        tally.notes.append(
            f"FAILED message events: {len(missing):,} missing (e.g. {missing[:3]}), "
            f"{len(extra):,} for messages the provider took (e.g. {extra[:3]})"
        )

    def all_hooks() -> list[Any] | None:
        got = hooks.received()
        failures = {h.data.get("messageId") for h in got if h.type == "message.failed"}
        completed = any(h.type == "job.completed" and h.data.get("jobId") == job_id for h in got)
        return got if failures >= failed and completed else None

    try:
        got = wait_for(all_hooks, 120, "every webhook")
    except AssertionError:
        got = hooks.received()
    failures = {h.data.get("messageId") for h in got if h.type == "message.failed"}
    tally.checks["message.failed webhook for every failed message, at least once"] = (
        failures >= failed
    )
    tally.checks["job.completed webhook received"] = any(
        h.type == "job.completed" and h.data.get("jobId") == job_id for h in got
    )
    # A fold replayed after a kill publishes its message events again, at new offsets:
    # each must come under the webhook-id it came under first, so that a receiver that
    # deduplicates on it (as Standard Webhooks asks) sees each event once.
    ids: dict[str, set[str]] = {}
    for h in got:
        if h.type == "message.failed":
            ids.setdefault(str(h.data.get("messageId")), set()).add(h.webhook_id)
    split = sorted(message for message, seen in ids.items() if len(seen) > 1)
    tally.checks["each message.failed event under one webhook-id"] = bool(ids) and not split
    if split:
        tally.notes.append(f"{len(split):,} message.failed events under two ids (e.g. {split[:3]})")
    unsigned = [(h.type, h.webhook_id) for h in got if not h.signed]
    tally.checks["every webhook signed validly"] = bool(got) and not unsigned
    repeated = len(got) - len({h.webhook_id for h in got})
    tally.notes.append(
        f"{len(got):,} webhooks received, {repeated:,} of them again, "
        f"{hooks.truncated:,} cut short by a kill (not counted)"
        + (f"; {len(unsigned):,} not signed validly (e.g. {unsigned[:3]})" if unsigned else "")
    )
