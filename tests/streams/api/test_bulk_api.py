"""The Bulk API end to end: HTTP -> Kafka -> worker -> Redis -> HTTP."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from streams.settings import Settings
from streams.testing.processes import ApiProcess, wait_for
from streams.testing.topics import read_topic


def _wait_completed(client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/bulk/{job_id}").json()["job"]
        return job if job["status"] == "COMPLETED" else None

    return wait_for(probe, timeout, f"job {job_id} to complete")


def _all_users(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, str] = {}
    while True:
        response = client.get(f"/bulk/{job_id}/users", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        if not page["paging"]["more"]:
            assert page["paging"]["cursor"] is None
            return items
        params = {"cursor": page["paging"]["cursor"]}


def test_tutorial_shape_job_with_duplicates_end_to_end(api: ApiProcess) -> None:
    with api.client() as http:
        assert http.get("/readyz").json() == {"status": "ready"}
        created = http.post(
            "/bulk",
            json={"message": {"message": {"template": "TPL"}, "data": {"company": "Acme"}}},
        )
        assert created.status_code == 200, created.text
        job_id = created.json()["jobId"]
        # Read-your-writes: the job is there as soon as the create answered.
        job = http.get(f"/bulk/{job_id}").json()["job"]
        # As sent, plus the `event` Courier's SDKs require (the template, as in Courier's
        # own tutorial).
        assert job == {
            "definition": {
                "message": {"template": "TPL"},
                "data": {"company": "Acme"},
                "event": "TPL",
            },
            "enqueued": 0,
            "failures": 0,
            "received": 0,
            "status": "CREATED",
        }
        first = http.post(
            f"/bulk/{job_id}",
            json={"users": [{"to": {"user_id": "spike", "data": {"n": 1}}}, {"recipient": "faye"}]},
        )
        assert first.json() == {"errors": [], "total": 2}
        dup = {
            "profile": {"email": "x@y.io"},
            "data": {"recipientName": "Foo"},
            "recipient": "faye",
        }
        second = http.post(f"/bulk/{job_id}", json={"users": [dup, {"to": {"email": "e@x.io"}}]})
        assert second.json() == {"errors": [{"error": "Duplicate user", "user": dup}], "total": 1}
        assert http.get(f"/bulk/{job_id}").json()["job"]["received"] == 3

        run = http.post(f"/bulk/{job_id}/run")
        assert run.status_code == 202
        job = _wait_completed(http, job_id)
        assert (job["received"], job["enqueued"], job["failures"]) == (3, 3, 0)
        users = _all_users(http, job_id)
        assert [u["status"] for u in users] == ["ENQUEUED"] * 3
        assert users[0]["to"] == {"user_id": "spike", "data": {"n": 1}}
        assert [u["recipient"] for u in users] == ["spike", "faye", "e@x.io"]
        assert all(u["messageId"].startswith("1-") for u in users)


def test_sdk_flat_shape_and_2500_users_paged_to_the_end(
    api: ApiProcess, topology: Settings
) -> None:
    with api.client() as http:
        job_id = http.post(
            "/bulk",
            json={
                "message": {
                    "event": "EVT",
                    "content": {"title": "Hi"},
                    "locale": {"fr": {"title": "Salut"}},
                }
            },
        ).json()["jobId"]
        for start in (0, 1000, 2000):
            users = [
                {"to": {"user_id": f"user-{i}"}} for i in range(start, min(start + 1000, 2500))
            ]
            answer = http.post(f"/bulk/{job_id}", json={"users": users})
            assert answer.json() == {"errors": [], "total": len(users)}
        assert http.post(f"/bulk/{job_id}/run").status_code == 202
        _wait_completed(http, job_id)
        items = _all_users(http, job_id)
    assert [u["to"]["user_id"] for u in items] == [f"user-{i}" for i in range(2500)]
    assert {u["status"] for u in items} == {"ENQUEUED"}
    sends = read_topic(topology, topology.topic_sends, expected=2500, idle=3)
    assert {value["messageId"] for _, value, _ in sends} == {u["messageId"] for u in items}
    assert sends[0][1]["message"] == {
        "event": "EVT",
        "content": {"title": "Hi"},
        "locale": {"fr": {"title": "Salut"}},
    }


def test_every_error_code(api: ApiProcess) -> None:
    with api.client() as http, api.client(tenant=None) as anonymous:
        error = {
            "message": "Missing or unknown API key; send Authorization: Bearer <key>",
            "type": "authentication_error",
        }
        assert anonymous.get("/bulk/x").json() == error
        assert anonymous.post("/bulk", json={}).status_code == 401
        assert anonymous.get("/bulk/x", headers={"Authorization": "Bearer nope"}).status_code == 401

        bad = http.post("/bulk", json={"message": {"data": {}}})
        assert bad.status_code == 400
        assert bad.json()["type"] == "invalid_request_error"
        assert "message" in bad.json()["message"]
        assert (
            http.post(
                "/bulk", content=b"{not json", headers={"Content-Type": "application/json"}
            ).status_code
            == 400
        )
        assert (
            http.post(
                "/bulk",
                content=b"a=b",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ).status_code
            == 415
        )
        assert http.get("/bulk/no-such-job").status_code == 404
        assert http.get("/bulk/no-such-job/users").status_code == 404
        assert http.post("/bulk/no-such-job", json={"users": []}).status_code == 404
        assert http.post("/bulk/no-such-job/run").status_code == 404

        job_id = http.post("/bulk", json={"message": {"template": "T"}}).json()["jobId"]
        field = http.post(
            f"/bulk/{job_id}", json={"users": [{"to": {"user_id": "a"}}, {"to": "oops"}]}
        )
        assert field.status_code == 400
        assert field.json()["message"].startswith("users.1.to:")
        too_many = http.post(
            f"/bulk/{job_id}", json={"users": [{"recipient": f"u{i}"} for i in range(1001)]}
        )
        assert too_many.status_code == 413
        assert too_many.json()["type"] == "invalid_request_error"
        huge = http.post(
            f"/bulk/{job_id}",
            json={"users": [{"recipient": "r", "data": {"x": "y" * (7 * 1024 * 1024)}}]},
        )
        assert huge.status_code == 413
        assert http.get(f"/bulk/{job_id}/users", params={"cursor": "garbage"}).status_code == 400
        assert http.get(f"/bulk/{job_id}/users", params={"cursor": "x" * 20_000}).status_code == 400

        assert http.post(f"/bulk/{job_id}", json={"users": [{"recipient": "a"}]}).status_code == 200
        assert http.post(f"/bulk/{job_id}/run").status_code == 202
        # Courier answers 400 (a 409 would be retried by its SDKs).
        again = http.post(f"/bulk/{job_id}/run")
        assert again.status_code == 400
        assert again.json()["type"] == "invalid_request_error"
        assert again.json()["message"].startswith("BulkJobDuplicateInvocationError: ")
        late = http.post(f"/bulk/{job_id}", json={"users": [{"recipient": "b"}]})
        assert late.status_code == 400
        assert late.json()["type"] == "invalid_request_error"
        assert late.json()["message"].startswith("BulkJobAlreadySubmittedError: ")

        key = {"Idempotency-Key": "error-codes-1"}
        assert (
            http.post("/bulk", json={"message": {"template": "A"}}, headers=key).status_code == 200
        )
        mismatch = http.post("/bulk", json={"message": {"template": "B"}}, headers=key)
        assert mismatch.status_code == 422
        assert mismatch.json()["type"] == "invalid_request_error"
        not_allowed = http.request("DELETE", "/bulk")
        assert not_allowed.status_code == 405
        assert not_allowed.headers["Allow"] == "POST"
        assert not_allowed.json()["type"] == "invalid_request_error"
        assert http.get("/nowhere").status_code == 404


def test_tenants_are_isolated(api: ApiProcess) -> None:
    with api.client("acme") as acme, api.client("globex") as globex:
        job_id = acme.post("/bulk", json={"message": {"template": "T"}}).json()["jobId"]
        acme.post(f"/bulk/{job_id}", json={"users": [{"recipient": "a"}]})
        other = "1-00000000-000000000000000000000000"
        for method, path, body in (
            ("GET", "/bulk/{}", None),
            ("GET", "/bulk/{}/users", None),
            ("POST", "/bulk/{}", {"users": [{"recipient": "x"}]}),
            ("POST", "/bulk/{}/run", None),
        ):
            theirs = globex.request(method, path.format(job_id), json=body)
            missing = globex.request(method, path.format(other), json=body)
            assert theirs.status_code == missing.status_code == 404
            assert theirs.json()["type"] == missing.json()["type"] == "invalid_request_error"
            assert theirs.json()["message"].replace(job_id, "ID") == missing.json()[
                "message"
            ].replace(other, "ID")
        job = acme.get(f"/bulk/{job_id}").json()["job"]
        assert (job["received"], job["status"]) == (1, "CREATED")


def test_idempotent_replay_has_one_effect(api: ApiProcess, topology: Settings) -> None:
    with api.client() as http:
        key = {"Idempotency-Key": "create-once"}
        first = http.post("/bulk", json={"message": {"template": "T"}}, headers=key)
        second = http.post("/bulk", json={"message": {"template": "T"}}, headers=key)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        assert "Idempotent-Replayed" not in first.headers
        assert second.headers["Idempotent-Replayed"] == "true"
        job_id = first.json()["jobId"]

        users = {"users": [{"recipient": f"u{i}"} for i in range(10)]}
        ingest = [
            http.post(f"/bulk/{job_id}", json=users, headers={"Idempotency-Key": "ingest-once"})
            for _ in range(3)
        ]
        assert [r.json() for r in ingest] == [{"errors": [], "total": 10}] * 3
        assert http.get(f"/bulk/{job_id}").json()["job"]["received"] == 10

        run = [
            http.post(f"/bulk/{job_id}/run", headers={"Idempotency-Key": "run-once"})
            for _ in range(2)
        ]
        assert [r.status_code for r in run] == [202, 202]
        # Another tenant's identical key is another key.
        with api.client("globex") as globex:
            assert (
                globex.post("/bulk", json={"message": {"template": "T"}}, headers=key).json()
                != first.json()
            )
    commands = read_topic(topology, topology.topic_commands)
    kinds = [value["kind"] for key_, value, _ in commands if key_ == job_id.encode()]
    assert kinds == ["create", "ingest", "run"]


def test_in_flight_conflict_and_503_when_no_worker(topology: Settings, tmp_path: Path) -> None:
    # No worker: the command is accepted by Kafka but nobody answers it.
    server = ApiProcess(topology, tmp_path, api_result_timeout=3.0).start()
    try:
        with server.client() as http:
            answers: list[httpx.Response] = []
            key = {"Idempotency-Key": "slow-one"}
            first = threading.Thread(
                target=lambda: answers.append(
                    http.post("/bulk", json={"message": {"template": "T"}}, headers=key)
                )
            )
            first.start()
            time.sleep(0.5)
            busy = http.post("/bulk", json={"message": {"template": "T"}}, headers=key)
            first.join()
            assert busy.status_code == 409
            assert busy.headers["Retry-After"] == "1"
            assert answers[0].status_code == 503
            assert answers[0].headers["Retry-After"] == "5"
    finally:
        server.stop()


def test_503_when_redis_or_kafka_is_unreachable(topology: Settings, tmp_path: Path) -> None:
    no_redis = ApiProcess(topology, tmp_path, redis_url="redis://127.0.0.1:1/0").start()
    try:
        with no_redis.client() as http:
            for response in (
                http.get("/bulk/x"),
                http.post("/bulk", json={"message": {"template": "T"}}),
                http.get("/readyz"),
            ):
                assert response.status_code == 503
                assert response.headers["Retry-After"] == "5"
                assert response.json()["type"] == "api_error"
    finally:
        no_redis.stop()
    no_kafka = ApiProcess(topology, tmp_path, kafka_bootstrap_servers="127.0.0.1:1").start()
    try:
        with no_kafka.client() as http:
            response = http.post("/bulk", json={"message": {"template": "T"}})
            assert response.status_code == 503
            assert http.get("/readyz").status_code == 503
            assert http.get("/healthz").status_code == 200
    finally:
        no_kafka.stop()


def test_a_job_id_ending_in_a_newline_is_unknown_not_a_500(api: ApiProcess) -> None:
    """schemathesis found it: Python's `$` matched before a final newline, pydantic's
    pattern did not, and POST /bulk/<id>%0A/run answered 500."""
    with api.client() as http:
        for method, path in (
            ("POST", "/bulk/job%0A/run"),
            ("POST", "/bulk/job%0A"),
            ("GET", "/bulk/job%0A"),
            ("GET", "/bulk/job%0A/users"),
        ):
            response = http.request(method, path, json={"users": []} if method == "POST" else None)
            assert response.status_code == 404, (method, path, response.text)


def test_a_body_within_its_limit_whose_command_would_be_oversized_is_413(
    api: ApiProcess, topology: Settings
) -> None:
    """A body re-encodes into a command: `1e5` comes out as `100000.0`, so a body
    under the API's limit can make a command over the worker's. The API says 413
    at once rather than send what a worker would dead-letter, leaving the caller
    waiting for a result that never comes."""
    numbers = b"[" + b",".join([b"1e5"] * 1_000_000) + b"]"
    body = b'{"users": [{"recipient": "r", "data": {"n": ' + numbers + b"}}]}"
    assert len(body) < topology.api_max_body_bytes < 2 * len(body)
    with api.client() as http:
        job_id = http.post("/bulk", json={"message": {"template": "T"}}).json()["jobId"]
        answer = http.post(
            f"/bulk/{job_id}", content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 413, answer.text
        assert answer.json()["type"] == "invalid_request_error"
        assert "BULKSTREAM_MAX_COMMAND_BYTES" in answer.json()["message"]
        assert http.get(f"/bulk/{job_id}").json()["job"]["received"] == 0
