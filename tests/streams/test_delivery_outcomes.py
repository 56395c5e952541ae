"""Delivery outcomes against the real stack: reports on `bulk.delivery-status` folded
exactly into the job view, the users page and `GET /messages/{id}`, also while their
partitions move between workers; bad reports to the DLQ; one message event per state
reached."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from confluent_kafka import Producer

from streams.aggregate.delivery import ENDING, STEPS
from streams.ids import message_digest, position_digest, positional_message_id
from streams.kafka.config import producer_config
from streams.settings import Settings
from streams.testing.client import Client, ingest_generated
from streams.testing.processes import WorkerProcess, wait_for
from streams.testing.stack import create, job_of, metric, sends_of, stack, wait_job
from streams.testing.topics import read_dlq, read_topic
from streams.views import keys

AT = 1_760_000_000_000
# position range -> the reports each of its messages gets, in order; and its end state
PLAN: list[tuple[range, list[str], str]] = [
    (range(0, 100), ["SENT", "DELIVERED"], "DELIVERED"),
    (range(100, 150), ["DELIVERED", "SENT"], "DELIVERED"),  # reverse order
    (range(150, 200), ["SENT", "FAILED"], "FAILED"),
    (range(200, 220), ["UNDELIVERABLE"], "UNDELIVERABLE"),
    (range(220, 240), ["DELIVERED", "FAILED"], "DELIVERED"),  # a late failure
    (range(240, 250), ["OPENED", "CLICKED"], "CLICKED"),
]
REPORTED = 250
USERS = 300
MOVING_JOBS = 8  # over most of the 8 partitions
MOVING_USERS = 500
SENT_ONLY = dict.fromkeys(("DELIVERED", "OPENED", "CLICKED", "FAILED", "UNDELIVERABLE"), 0) | {
    "SENT": MOVING_USERS
}


def report(message_id: str, job_id: str, status: str, at: int, **more: Any) -> dict[str, Any]:
    return {"messageId": message_id, "jobId": job_id, "status": status, "at": at, **more}


def produce(settings: Settings, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer(producer_config(settings))
    for key, value in records:
        producer.produce(settings.topic_delivery_status, key=key, value=value)
    assert producer.flush(30) == 0


def planned_reports(job_id: str, ids: dict[int, str]) -> list[tuple[bytes | None, bytes]]:
    records: list[tuple[bytes | None, bytes]] = []
    for positions, statuses, _ in PLAN:
        for position in positions:
            for i, status in enumerate(statuses):
                reason = "mailbox full" if status in ("FAILED", "UNDELIVERABLE") else None
                body = report(ids[position], job_id, status, AT + position * 10 + i, reason=reason)
                records.append((job_id.encode(), orjson.dumps(body)))
                if position < 50:  # the first 50 messages' reports, twice each
                    records.append((job_id.encode(), orjson.dumps(body)))
    return records


def expected_counts() -> dict[str, int]:
    counts = dict.fromkeys(("SENT", "DELIVERED", "OPENED", "CLICKED", "FAILED", "UNDELIVERABLE"), 0)
    for positions, _, end in PLAN:
        counts[end] += len(positions)
    return counts


def users_by_position(http: httpx.Client, job_id: str) -> dict[int, dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = http.get(f"/bulk/{job_id}/users", params={"cursor": cursor} if cursor else None)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        items += page["items"]
        if not page["paging"]["more"]:
            return dict(enumerate(items))
        cursor = page["paging"]["cursor"]


def test_reports_are_folded_exactly_and_bad_ones_go_to_the_dlq(
    topology: Settings,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    # Small batches: each is folded while the one before ends (its state unrecorded).
    with stack(topology, tmp_path, start_worker, reports_batch=7) as (workers, http):
        job_id = create(http)
        users = [{"to": {"user_id": f"u{i}"}} for i in range(USERS)]
        users.append({"to": {"email": "not-an-email"}})  # unroutable: the fan-out fails it
        assert http.post(f"/bulk/{job_id}", json={"users": users}).status_code == 200
        assert http.post(f"/bulk/{job_id}/run").status_code == 202
        wait_job(http, job_id, lambda job: job["status"] == "COMPLETED", 60)
        ids = {send["position"]: send["messageId"] for send in sends_of(topology, job_id)}
        assert len(ids) == USERS
        prefix = ids[0][:11]
        assert all(ids[p] == prefix + position_digest(job_id, p) for p in ids)
        unroutable = prefix + position_digest(job_id, USERS)  # the fan-out failed it

        bad: list[tuple[bytes | None, bytes]] = [
            (job_id.encode(), orjson.dumps(report(prefix + "f" * 24, job_id, "SENT", AT))),
            (b"no-such-job", orjson.dumps(report(ids[0], "no-such-job", "SENT", AT))),
            (b"another-key", orjson.dumps(report(ids[0], job_id, "SENT", AT))),
            (job_id.encode(), b"{not json"),
            (job_id.encode(), orjson.dumps({"messageId": ids[0], "jobId": job_id, "at": AT})),
            (
                job_id.encode(),
                orjson.dumps(report(ids[0], job_id, "CLICKED", AT, tenant="globex")),
            ),
            (job_id.encode(), orjson.dumps(report(unroutable, job_id, "SENT", AT))),
        ]
        records = planned_reports(job_id, ids)
        produce(topology, bad[:3] + records + bad[3:])

        counts = expected_counts()
        job = wait_job(http, job_id, lambda job: job.get("delivery") == counts, 60)
        assert job["status"] == "COMPLETED"
        assert sum(job["delivery"].values()) == REPORTED
        # Where the fold's time went: every step of it, and the reports feed's.
        for step in STEPS + ENDING:
            assert metric(workers, "bulkstream_delivery_fold_seconds_total", phase=step) > 0
        spent = {
            phase: metric(workers, "bulkstream_feed_seconds_total", feed="reports", phase=phase)
            for phase in ("fetching", "applying")
        }
        assert spent["fetching"] > 0
        assert spent["applying"] > 0
        # The takes' own CPU, part of their wall time.
        taking = metric(workers, "bulkstream_feed_take_cpu_seconds_total", feed="reports")
        assert 0 < taking < spent["fetching"]

        dead = read_dlq(topology, len(bad), topic=topology.topic_delivery_status_dlq)
        reasons = Counter(headers["x-bulkstream-reason"].decode() for _, headers, _ in dead)
        assert reasons == {
            "unknown-message": 1,
            "unknown-job": 1,
            "wrong-key": 1,
            "undecodable": 1,
            "invalid": 1,
            "wrong-tenant": 1,
            "not-sent": 1,
        }

        # One message event per state reached upwards, each once.
        events = [
            value
            for _, value, _ in read_topic(topology, topology.topic_message_events)
            if value["jobId"] == job_id
        ]
        raised = Counter((event["messageId"], event["status"]) for event in events)
        assert set(raised.values()) == {1}
        assert Counter(status for _, status in raised) == {
            "SENT": 100 + 50,
            "DELIVERED": 100 + 50 + 20,
            "FAILED": 50,
            "UNDELIVERABLE": 20,
            "OPENED": 10,
            "CLICKED": 10,
        }
        assert all(event["tenant"] == "acme" for event in events)

        # The users page: Courier's status as it was, the delivery beside it.
        items = users_by_position(http, job_id)
        for positions, statuses, end in PLAN:
            for position in positions:
                item = items[position]
                assert item["status"] == "ENQUEUED"
                assert item["delivery"]["status"] == end
                assert item["delivery"]["at"] == AT + position * 10 + statuses.index(end)
        assert "delivery" not in items[USERS - 1]
        assert items[USERS]["status"] == "ERROR"
        assert "delivery" not in items[USERS]

        # GET /messages/{id}: Courier's shape, this tenant's only.
        delivered = http.get(f"/messages/{ids[120]}").json()
        assert delivered["status"] == "DELIVERED"
        assert delivered["recipient"] == "u120"
        assert delivered["delivered"] == AT + 1200
        assert delivered["sent"] == AT + 1201
        assert delivered["jobId"] == job_id
        failed = http.get(f"/messages/{ids[160]}").json()
        assert (failed["status"], failed["reason"], failed["error"]) == (
            "UNDELIVERABLE",
            "FAILED",
            "mailbox full",
        )
        assert http.get(f"/messages/{ids[260]}").status_code == 404  # never reported
        assert http.get(f"/messages/{prefix + 'f' * 24}").status_code == 404
        assert http.get("/messages/not-an-id").status_code == 404
        api_keys = {"Authorization": "Bearer sk-globex-9876543210"}
        url = f"{str(http.base_url).rstrip('/')}/messages/{ids[120]}"
        other = httpx.get(url, headers=api_keys, timeout=10)
        assert other.status_code == 404

        # A message named as a fan-out of an earlier release named it (a hash of job and
        # identity, no position, as during a rolling upgrade): found in the message index.
        legacy = prefix + message_digest(job_id, "user:u298")
        produce(topology, [(job_id.encode(), orjson.dumps(report(legacy, job_id, "SENT", AT)))])
        counts["SENT"] += 1
        wait_job(http, job_id, lambda job: job.get("delivery") == counts, 60)
        assert http.get(f"/messages/{legacy}").json()["recipient"] == "u298"

        # Everything again, after a worker was killed: nothing moves.
        workers[0].kill()
        workers[0].start()
        produce(topology, records)
        marker = (job_id.encode(), orjson.dumps(report(ids[299], job_id, "SENT", AT)))
        produce(topology, [marker])
        counts["SENT"] += 1
        job = wait_job(http, job_id, lambda job: job.get("delivery") == counts, 120)
        time.sleep(2)
        assert job_of(http, job_id)["delivery"] == counts
        events = wait_for(
            lambda: (lambda found: found if len(found) == sum(raised.values()) + 2 else None)(
                [
                    value
                    for _, value, _ in read_topic(topology, topology.topic_message_events)
                    if value["jobId"] == job_id
                ]
            ),
            30,
            "the legacy report's and the marker's message events",
        )

        # Views behind the state (a worker died between writing the two): the next report
        # of a message, one that changes nothing too, writes its view and the counts again.
        view = keys.job(topology.redis_prefix, "acme", job_id)
        stale = dict.fromkeys(counts, 0)
        redis_client.hset(view, mapping={"delivery": orjson.dumps(stale), "deliveryUpto": 0})
        bucket = keys.delivery_bucket(topology.redis_prefix, "acme", job_id, keys.bucket_of(120))
        redis_client.hdel(bucket, "120")
        redis_client.hdel(keys.messages(topology.redis_prefix, "acme", ids[120]), ids[120][-24:])
        wait_job(http, job_id, lambda job: job.get("delivery") == stale, 10)
        assert http.get(f"/messages/{ids[120]}").status_code == 404
        again = report(ids[120], job_id, "DELIVERED", AT + 1200)
        produce(topology, [(job_id.encode(), orjson.dumps(again))])
        wait_job(http, job_id, lambda job: job.get("delivery") == counts, 60)

        def message_again() -> bool:
            answer = http.get(f"/messages/{ids[120]}")
            return answer.status_code == 200 and answer.json() == delivered

        wait_for(message_again, 60, "the message's view written again")

        # Redis lost: the views come back from the state, delivery included.
        redis_client.delete(*redis_client.keys(f"{topology.redis_prefix}:*"))

        def rebuilt() -> bool:
            # The API may answer the job from its copy for a second: the message is
            # read from Redis itself.
            answer = http.get(f"/bulk/{job_id}")
            if answer.status_code != 200 or answer.json()["job"].get("delivery") != counts:
                return False
            message = http.get(f"/messages/{ids[120]}")
            return message.status_code == 200 and message.json() == delivered

        wait_for(rebuilt, 60, "the views rebuilt")
        assert users_by_position(http, job_id)[160]["delivery"] == items[160]["delivery"]

        # Retry: a new job of exactly the users whose delivery failed (or the fan-out).
        answer = http.post(f"/bulk/{job_id}/retry")
        assert answer.status_code == 200, answer.text
        retry_id = answer.json()["jobId"]
        retried = job_of(http, retry_id)
        assert retried["status"] == "CREATED"
        assert retried["parentJobId"] == job_id
        assert retried["definition"] == job_of(http, job_id)["definition"]
        failed = [
            position
            for positions, _, end in PLAN
            if end in ("FAILED", "UNDELIVERABLE")
            for position in positions
        ]
        assert retried["received"] == len(failed) + 1
        wanted = [users[position] for position in failed] + [users[USERS]]
        got = users_by_position(http, retry_id)
        assert [got[i]["to"] for i in range(len(got))] == [user["to"] for user in wanted]
        unfinished = http.post(f"/bulk/{retry_id}/retry")  # only a finished job
        assert unfinished.status_code == 400
        assert unfinished.json()["type"] == "invalid_request_error"
        assert http.post(f"/bulk/{retry_id}/run").status_code == 202
        done = wait_job(http, retry_id, lambda job: job["status"] == "COMPLETED", 60)
        assert (done["enqueued"], done["failures"]) == (len(failed), 1)
        # Its own retry: the unroutable user, failed by the fan-out again, alone.
        again = http.post(f"/bulk/{retry_id}/retry").json()["jobId"]
        assert job_of(http, again)["received"] == 1
        # Only one's own jobs.
        url = f"{str(http.base_url).rstrip('/')}/bulk/{job_id}/retry"
        assert httpx.post(url, headers=api_keys, timeout=10).status_code == 404


def test_workers_set_to_identity_ids_make_them_and_fold_their_reports(
    topology: Settings,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """BULKSTREAM_MESSAGE_IDS=identity (a rolling upgrade from a release before 2026-12):
    the jobs created make their ids as that release did, the users page names them so,
    and their reports are found through the job's index."""
    with stack(topology, tmp_path, start_worker, message_ids="identity") as (_, http):
        job_id = create(http)
        users = [{"to": {"user_id": f"u{i}"}} for i in range(5)]
        assert http.post(f"/bulk/{job_id}", json={"users": users}).status_code == 200
        assert http.post(f"/bulk/{job_id}/run").status_code == 202
        wait_job(http, job_id, lambda job: job["status"] == "COMPLETED", 60)
        sends = {send["position"]: send["messageId"] for send in sends_of(topology, job_id)}
        prefix = sends[0][:11]
        assert sends == {p: prefix + message_digest(job_id, f"user:u{p}") for p in range(5)}
        items = users_by_position(http, job_id)
        assert {p: item["messageId"] for p, item in items.items()} == sends

        records: list[tuple[bytes | None, bytes]] = [
            (job_id.encode(), orjson.dumps(report(sends[p], job_id, "SENT", AT + p)))
            for p in range(5)
        ]
        produce(topology, records)
        wait_job(http, job_id, lambda job: (job.get("delivery") or {}).get("SENT") == 5, 60)
        assert http.get(f"/messages/{sends[3]}").json()["recipient"] == "u3"


@pytest.mark.parametrize("native", [True, False], ids=["native-reader", "confluent-kafka"])
def test_reports_are_folded_once_while_partitions_move(
    topology: Settings,
    client: Client,
    start_worker: Callable[..., WorkerProcess],
    native: bool,
) -> None:
    """A worker that joins, and one that stops, move the reports' partitions while
    reports flow: each worker gives a partition up at its cursor, and the next
    holder reads on from there. Every report is counted, in every job: none
    skipped. The feed reads through the native module's librdkafka when it is built,
    else (and with `native` off) through confluent-kafka's."""
    # Many batches: a hand-over comes between two.
    overrides = {"reports_batch": 25, "native": native}
    first = start_worker("w1", **overrides)
    jobs = [client.create({"template": "T"}) for _ in range(MOVING_JOBS)]
    for job_id in jobs:
        assert ingest_generated(client, job_id, MOVING_USERS) == MOVING_USERS
        client.run(job_id)
    for job_id in jobs:
        client.wait_status(job_id, "COMPLETED", 60)
    records: list[tuple[bytes | None, bytes]] = [
        (
            job_id.encode(),
            orjson.dumps(
                report(
                    positional_message_id(client.created_at(job_id), job_id, position),
                    job_id,
                    "SENT",
                    AT + position,
                )
            ),
        )
        for position in range(MOVING_USERS)
        for job_id in jobs
    ]
    chunks = [records[n : n + 100] for n in range(0, len(records), 100)]
    third = len(chunks) // 3
    for chunk in chunks[:third]:
        produce(topology, chunk)
    start_worker("w2", **overrides)  # the group gives it half the partitions
    for chunk in chunks[third : 2 * third]:
        produce(topology, chunk)
        time.sleep(0.05)
    assert first.stop() == 0  # it hands the rest over
    for chunk in chunks[2 * third :]:
        produce(topology, chunk)

    def folded() -> bool:
        views = [client.job(job_id) for job_id in jobs]
        return all(view is not None and view.delivery == SENT_ONLY for view in views)

    wait_for(folded, 90, "every report of every job folded")
