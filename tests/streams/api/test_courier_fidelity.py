"""Courier's behaviour, field by field, against the real stack (API, worker, Kafka, Redis).

Through Courier's own Python SDK with its strict response validation wherever the SDK
can send the case; raw HTTP where it cannot (explicit nulls, unknown keys, key order).
Each test names the points of docs/courier-compatibility.md it shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from courier import BadRequestError, Courier

from streams.api.idempotency import job_id_for
from streams.settings import Settings
from streams.testing.processes import KEYS, ApiProcess, WorkerProcess, wait_for
from streams.testing.topics import read_topic
from streams.views import keys

TERMINAL = ("COMPLETED", "ERROR")


@pytest.fixture
def sdk(api: ApiProcess) -> Iterator[Courier]:
    client = Courier(api_key=KEYS["acme"], base_url=api.url, _strict_response_validation=True)
    yield client
    client.close()


def _wait_done(sdk: Courier, job_id: str, timeout: float = 120) -> Any:
    def probe() -> Any:
        job = sdk.bulk.retrieve_job(job_id=job_id).job
        return job if job.status in TERMINAL else None

    return wait_for(probe, timeout, f"job {job_id} to finish")


def _sends_of(topology: Settings, job_id: str, expected: int) -> dict[int, dict[str, Any]]:
    """The job's sends on the topic by position; each position exactly once."""
    sends = [
        value
        for _, value, _ in read_topic(topology, topology.topic_sends, expected=expected, idle=2)
        if value["jobId"] == job_id
    ]
    by_position = {send["position"]: send for send in sends}
    assert len(by_position) == len(sends) == expected, [s["position"] for s in sends]
    return by_position


def test_run_twice_and_ingest_after_run_are_400_and_not_retried(
    api: ApiProcess, sdk: Courier
) -> None:
    """Points 1, 2: Courier's 400 invalid_request_error; the SDK does not retry a 400."""
    job_id = sdk.bulk.create_job(message={"event": "E"}).job_id
    sdk.bulk.add_users(job_id=job_id, users=[{"to": {"user_id": "u"}}])
    sdk.bulk.run_job(job_id=job_id)
    requests: list[str] = []
    hooks = {"request": [lambda r: requests.append(f"{r.method} {r.url.path}")]}
    with Courier(
        api_key=KEYS["acme"],
        base_url=api.url,
        max_retries=2,
        http_client=httpx.Client(event_hooks=hooks),
    ) as counting:
        _refused_twice(counting, job_id)
    assert requests == [f"POST /bulk/{job_id}/run", f"POST /bulk/{job_id}"]  # no retries
    assert _wait_done(sdk, job_id).received == 1


def _refused_twice(counting: Courier, job_id: str) -> None:
    with pytest.raises(BadRequestError) as second_run:
        counting.bulk.run_job(job_id=job_id)
    body: Any = second_run.value.body
    assert set(body) == {"message", "type"}
    assert body["type"] == "invalid_request_error"
    assert body["message"].startswith("BulkJobDuplicateInvocationError")
    with pytest.raises(BadRequestError) as late:
        counting.bulk.add_users(job_id=job_id, users=[{"to": {"user_id": "late"}}])
    body = late.value.body
    assert body["type"] == "invalid_request_error"
    assert body["message"].startswith("BulkJobAlreadySubmittedError")


def test_users_without_an_address_or_with_any_data_are_accepted_and_fail_visibly(
    api: ApiProcess, sdk: Courier, topology: Settings
) -> None:
    """Points 3, 4, 5, 9: no silent drop; `recipient` on every item; strict parsing."""
    job_id = sdk.bulk.create_job(message={"event": "E", "data": {"g": 1}}).job_id
    users: list[dict[str, Any]] = [
        {},
        {"data": {"a": 1}},
        {"profile": {"name": "No Address"}},
        {"to": {"user_id": "list-data"}, "data": [1, 2]},
        {"to": {"user_id": "text-data", "data": {"t": 1}}, "data": "text"},
        {"to": {"user_id": "number-data"}, "data": 7},
        {"profile": {"email": "e@example.com"}},
        {"profile": {"email": "e@example.com"}},  # a duplicate, echoed with its recipient
    ]
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {KEYS['acme']}"}) as h:
        answer = h.post(f"/bulk/{job_id}", json={"users": users}).json()
    assert answer == {
        "errors": [
            {
                "error": "Duplicate user",
                "user": {"recipient": "e@example.com", "profile": {"email": "e@example.com"}},
            }
        ],
        "total": 7,
    }
    job = sdk.bulk.retrieve_job(job_id=job_id).job
    assert (job.status, job.received) == ("CREATED", 7)
    pending = sdk.bulk.list_users(job_id=job_id)  # strict parsing of a CREATED job's page
    assert [item.status for item in pending.items] == ["PENDING"] * 7

    sdk.bulk.run_job(job_id=job_id)
    job = _wait_done(sdk, job_id)
    assert (job.status, job.received, job.enqueued, job.failures) == ("COMPLETED", 7, 4, 3)
    items = sdk.bulk.list_users(job_id=job_id).items
    assert [item.status for item in items] == ["ERROR"] * 3 + ["ENQUEUED"] * 4
    assert [item.recipient for item in items] == [
        None,
        None,
        None,
        "list-data",
        "text-data",
        "number-data",
        "e@example.com",
    ]
    for item in items[:3]:
        error = (item.model_extra or {})["error"]
        assert error.startswith("No routable address"), error
        assert item.message_id is None
    sends = _sends_of(topology, job_id, 4)
    assert [sends[p]["data"] for p in (3, 4, 5, 6)] == [[1, 2], {"t": 1}, 7, {"g": 1}]
    assert {sends[p]["messageId"] for p in sends} == {item.message_id for item in items[3:]}


def test_definition_and_users_come_back_as_sent_and_reach_the_send_whole(
    api: ApiProcess, sdk: Courier, topology: Settings
) -> None:
    """Points 6, 7, 8, 9: echo as sent (nulls, unknown keys, key order); every field of
    the nested message and of the user on the send; the data merge order."""
    inner: dict[str, Any] = {
        "template": "TPL",
        "brand_id": "BRAND",
        "data": {"from": "message", "a": 1},
        "metadata": {"tags": ["launch"]},
        "timeout": {"message": 3600},
        "delay": {"duration": 10},
        "expiry": {"expires_in": "1d"},
        "context": {"tenant_id": "t1"},
        "preferences": {"subscription_topic_id": "news"},
        "to": {"list_id": "ignored-list"},
        "routing": {"method": "single", "channels": ["email"]},
        "custom_key": None,
    }
    message = {
        "message": inner,
        "data": {"from": "job", "b": 2},
        "locale": None,
        "unknown": {"kept": True},
    }
    to: dict[str, Any] = {
        "user_id": "spike",
        "tenant_id": "t1",
        "account_id": "acct",
        "list_id": "l1",
        "locale": "fr",
        "preferences": {"notifications": {}},
        "email": None,
        "data": {"from": "to", "c": 3},
    }
    user = {
        "zz_first": 1,
        "to": to,
        "recipient": None,
        "profile": {"email": "spike@example.com"},
        "preferences": {"notifications": {}},
        "data": {"from": "user", "d": 4},
        "custom": {"k": [1, None]},
    }
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {KEYS['acme']}"}) as h:
        created = h.post("/bulk", json={"message": message})
        job_id = created.json()["jobId"]
        definition = h.get(f"/bulk/{job_id}").json()["job"]["definition"]
        assert definition == {**message, "event": "TPL"}
        assert list(definition) == [*message, "event"]
        metadata = {"trace_id": "abc", "tags": ["x"]}
        answer = h.post(f"/bulk/{job_id}", json={"users": [user], "metadata": metadata})
        assert answer.json() == {"errors": [], "total": 1}
        item = h.get(f"/bulk/{job_id}/users").json()["items"][0]
        assert item == {**user, "status": "PENDING"}
        assert list(item) == [*user, "status"]
    sdk.bulk.list_users(job_id=job_id)  # strict parsing of the echo
    sdk.bulk.retrieve_job(job_id=job_id)  # ...and of the definition, with its `event`
    sdk.bulk.run_job(job_id=job_id)
    assert _wait_done(sdk, job_id).enqueued == 1
    send = _sends_of(topology, job_id, 1)[0]
    nested = {k: v for k, v in inner.items() if k != "data"}
    assert send["message"] == {"locale": None, "unknown": {"kept": True}, **nested}
    assert send["to"] == {k: v for k, v in to.items() if k != "data"}
    # job data (the message's, then the job's), then the user's data, then to.data
    assert send["data"] == {"from": "to", "a": 1, "b": 2, "d": 4, "c": 3}
    assert (send["profile"], send["preferences"]) == (user["profile"], user["preferences"])
    assert send["metadata"] == metadata
    assert send["extra"] == {"zz_first": 1, "custom": {"k": [1, None]}}
    item = sdk.bulk.list_users(job_id=job_id).items[0]
    assert (item.status, item.message_id, item.recipient) == ("ENQUEUED", send["messageId"], None)


def test_a_create_retried_after_a_5xx_makes_one_job(topology: Settings, tmp_path: Path) -> None:
    """Point 13: the job id comes from (tenant, Idempotency-Key); the retry reuses the
    claim's command id, so the job is made once, whatever the first attempt did."""
    server = ApiProcess(topology, tmp_path, api_result_timeout=2.0).start()
    worker: WorkerProcess | None = None
    try:
        with server.client() as http:
            body = {"message": {"event": "E"}}
            key = {"Idempotency-Key": "create-after-503"}
            first = http.post("/bulk", json=body, headers=key)  # no worker yet: 503
            assert first.status_code == 503, first.text
            worker = WorkerProcess(topology, "w1", tmp_path, "all").start()

            def retry() -> httpx.Response | None:
                answer = http.post("/bulk", json=body, headers=key)
                return answer if answer.status_code == 200 else None

            retried = wait_for(retry, 120, "the retried create", every=1.0)
            job_id = retried.json()["jobId"]
            assert job_id == job_id_for("acme", "create-after-503")
            assert http.post("/bulk", json=body, headers=key).json() == {"jobId": job_id}
            # Without the key's record (lost, or expired), the same key still names the
            # same job: a different message for it is refused, the same one is that job.
            records = redis.Redis.from_url(topology.redis_url)
            pattern = f"{topology.redis_prefix}:*:idem:*"
            records.delete(*records.scan_iter(match=pattern))
            other = http.post("/bulk", json={"message": {"event": "OTHER"}}, headers=key)
            assert other.status_code == 422, other.text
            records.delete(*records.scan_iter(match=pattern))
            records.close()
            assert http.post("/bulk", json=body, headers=key).json() == {"jobId": job_id}
    finally:
        server.stop()
        if worker is not None:
            worker.stop()
    creates = [
        value
        for key_, value, _ in read_topic(topology, topology.topic_commands)
        if value["kind"] == "create"
    ]
    assert {c["jobId"] for c in creates} == {job_id}
    # The 503 and its retries share one command id; the later claims have their own.
    assert len({c["commandId"] for c in creates}) == 3


def test_a_key_used_again_after_its_record_expired_makes_a_new_command(
    api: ApiProcess, topology: Settings, redis_client: redis.Redis
) -> None:
    """Point 14: command ids are unique per claim, so the new ingest is applied, not
    answered with the old result."""
    with api.client() as http:
        job_id = http.post("/bulk", json={"message": {"event": "E"}}).json()["jobId"]
        key = {"Idempotency-Key": "reused-key"}
        first = http.post(f"/bulk/{job_id}", json={"users": [{"recipient": "a"}]}, headers=key)
        assert first.json() == {"errors": [], "total": 1}
        # What 25 h would do: the record expires.
        for name in redis_client.scan_iter(match=f"{topology.redis_prefix}:*:idem:*"):
            redis_client.delete(name)
        users = {"users": [{"recipient": "b"}, {"recipient": "c"}]}
        second = http.post(f"/bulk/{job_id}", json=users, headers=key)
        assert second.json() == {"errors": [], "total": 2}
        assert http.get(f"/bulk/{job_id}").json()["job"]["received"] == 3


def test_job_ids_never_reach_another_key(api: ApiProcess) -> None:
    """Point 11: an id that names no job is a 404, whatever it holds."""
    with api.client() as http:
        job_id = http.post("/bulk", json={"message": {"event": "E"}}).json()["jobId"]
        http.post(f"/bulk/{job_id}", json={"users": [{"recipient": "a"}]})
        http.post(f"/bulk/{job_id}/run")
        for suffix in (":users:0", ":status:0", ":pages", ":result:x", ":", "::", ":job:x"):
            for path in (f"/bulk/{job_id}{suffix}", f"/bulk/{job_id}{suffix}/users"):
                answer = http.get(path)
                assert answer.status_code == 404, (path, answer.text)
                assert answer.json()["type"] == "invalid_request_error"
        assert keys.job("p", "acme", "a:b") != keys.job("p", "acme:b", "a")
