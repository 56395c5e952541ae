"""The whole path on the real broker and Redis: create, three batches, run, COMPLETED."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.ids import positional_message_id
from streams.settings import Settings
from streams.testing.client import Client
from streams.testing.processes import WorkerProcess
from streams.testing.topics import read_topic

SMS_ONLY: dict[str, Any] = {"channels": ["sms"]}


def test_create_ingest_three_batches_run_completed(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    job_id = client.create(
        {
            "message": {"template": "TPL-1", "routing": {"method": "single", **SMS_ONLY}},
            "data": {"company": "Acme", "plan": "free"},
            "brand": "BRAND",
            "locale": "en_US",
        }
    )
    batch1: list[dict[str, Any]] = [
        {"to": {"user_id": "spike", "data": {"plan": "pro"}}},
        {"recipient": "faye", "data": {"name": "Faye"}, "profile": {"phone_number": "+15550001"}},
        {"profile": {"phone_number": "+1 555 000 2222"}},
    ]
    batch2: list[dict[str, Any]] = [
        {"to": {"user_id": "spike"}},  # duplicate of batch 1
        {"to": {"data": {"name": "nobody"}}},  # no address at all: accepted, fails in fan-out
        {"profile": {"email": "ed@example.com"}},  # email only, but the job is sms only
        {"to": {"user_id": "jet"}},
        {"to": {"user_id": "jet"}},  # duplicate within the batch
    ]
    batch3: list[dict[str, Any]] = [
        {"to": {"email": f"user{i}@example.com", "phone_number": f"+1555100{i:04d}"}}
        for i in range(250)
    ]

    r1 = client.result(client.ingest(job_id, batch1).command_id)
    r2 = client.result(client.ingest(job_id, batch2).command_id)
    r3 = client.result(client.ingest(job_id, batch3).command_id)
    assert (r1.ok, r1.total, r1.errors) == (True, 3, [])
    assert r2.total == 3
    assert r2.errors is not None
    assert [(e.error, e.user) for e in r2.errors] == [
        ("Duplicate user", {"recipient": "spike", "to": {"user_id": "spike"}}),
        ("Duplicate user", {"recipient": "jet", "to": {"user_id": "jet"}}),
    ]
    assert r3.total == 250

    job = client.job(job_id)
    assert job is not None
    assert (job.status, job.received, job.enqueued, job.failures) == ("CREATED", 256, 0, 0)
    assert job.definition["brand"] == "BRAND"

    run = client.result(client.run(job_id).command_id)
    assert run.ok
    job = client.wait_status(job_id, "COMPLETED", 120)
    assert (job.received, job.enqueued, job.failures) == (256, 254, 2)

    # The sends topic, read_committed: one send per routable user, nothing else.
    sends = read_topic(topology, topology.topic_sends, expected=254, idle=3)
    by_id = {value["messageId"]: value for _, value, _ in sends}
    assert len(sends) == len(by_id) == 254
    users = client.users(job_id)
    assert len(users) == 256
    expected_order = [*batch1, *batch2[1:4], *batch3]
    view_fields = ("status", "messageId", "error")
    # As sent, plus the view's fields (and a `recipient` where the user sent none).
    assert [
        {k: v for k, v in u.items() if k not in view_fields and (k != "recipient" or k in sent)}
        for u, sent in zip(users, expected_order, strict=True)
    ] == expected_order
    assert [u.get("recipient") for u in users[:6]] == [
        "spike",
        "faye",
        "+1 555 000 2222",
        None,  # no identity: nothing to show
        "ed@example.com",
        "jet",
    ]

    created_at = client.created_at(job_id)
    for position, item in enumerate(users):
        mid = positional_message_id(created_at, job_id, position)
        if item["status"] == "ERROR":
            shown = expected_order[position]
            assert {k: v for k, v in item.items() if k != "recipient" or k in shown} == {
                **shown,
                "status": "ERROR",
                "error": "No routable address for channel(s) sms",
            }
            assert mid not in by_id
            continue
        assert item["status"] == "ENQUEUED"
        assert item["messageId"] == mid
        send = by_id[mid]
        assert send["position"] == position
        assert send["jobId"] == job_id
        assert send["tenant"] == "acme"
        assert send["message"] == {
            "template": "TPL-1",
            "brand": "BRAND",
            "locale": "en_US",
            "routing": {"method": "single", **SMS_ONLY},
        }

    spike = by_id[users[0]["messageId"]]
    assert spike["to"] == {"user_id": "spike"}
    assert spike["data"] == {"company": "Acme", "plan": "pro"}  # the user wins, key by key
    faye = by_id[users[1]["messageId"]]
    assert faye["to"] == {"user_id": "faye"}
    assert faye["profile"] == {"phone_number": "+15550001"}
    assert faye["data"] == {"company": "Acme", "plan": "free", "name": "Faye"}

    # Every status change is on the job-events topic, every result on command-results.
    events = read_topic(topology, topology.topic_job_events)
    statuses = [value["status"] for key, value, _ in events if key == job_id.encode()]
    assert statuses == ["CREATED", "PROCESSING", "COMPLETED"]
    results = read_topic(topology, topology.topic_command_results)
    assert {value["commandId"] for _, value, _ in results} >= {
        r1.command_id,
        r2.command_id,
        r3.command_id,
        run.command_id,
    }
    assert all(key == job_id.encode() for key, _, _ in results)


def test_flat_sdk_shape_and_empty_job(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    job_id = client.create(
        {
            "event": "EVT",
            "content": {"title": "Hi {name}"},
            "data": {"name": "you"},
            "override": {"x": 1},
        }
    )
    client.result(
        client.ingest(job_id, [{"to": {"email": "a@b.io", "data": {"name": "A"}}}]).command_id
    )
    client.result(client.run(job_id).command_id)
    client.wait_status(job_id, "COMPLETED", 60)
    ((_, send, _),) = read_topic(topology, topology.topic_sends, expected=1, idle=2)
    assert send["message"] == {
        "event": "EVT",
        "content": {"title": "Hi {name}"},
        "override": {"x": 1},
    }
    assert send["to"] == {"email": "a@b.io"}
    assert send["data"] == {"name": "A"}

    empty = client.create({"template": "T"})
    client.result(client.run(empty).command_id)
    job = client.wait_status(empty, "COMPLETED", 30)
    assert (job.received, job.enqueued, job.failures) == (0, 0, 0)
