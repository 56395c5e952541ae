"""Job control against the real stack: cancel, pause and resume, scheduled runs,
send-rate limits and dry runs, through the API and on `bulk.commands`, checked
against what a read_committed reader finds on the sends topic."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.settings import Settings
from streams.testing.client import Client
from streams.testing.processes import (
    ApiProcess,
    WorkerProcess,
    wait_ready,
)
from streams.testing.processes import cli as run_cli
from streams.testing.stack import (
    create,
    generated_job,
    job_of,
    metric,
    sends_of,
    stack,
    statuses,
    wait_job,
)
from streams.testing.topics import read_stamped
from streams.views.store import encode_cursor


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


# -- cancel -----------------------------------------------------------------------


def test_cancel_in_the_middle_of_a_200k_fan_out_over_two_workers(
    topology: Settings, tmp_path: Path, start_worker: Callable[..., WorkerProcess], client: Client
) -> None:
    """The answer comes once the cancel settled; from then on the counts are final and
    the sends on the topic are exactly `enqueued`, each once."""
    users = 200_000
    with stack(topology, tmp_path, start_worker) as (workers, http):
        job_id = generated_job(http, client, users)
        assert http.post(f"/bulk/{job_id}/run").status_code == 202
        wait_job(http, job_id, lambda j: j["enqueued"] >= 20_000, 120)
        asked = time.monotonic()
        answer = http.post(f"/bulk/{job_id}/cancel", timeout=120)
        settle = time.monotonic() - asked
        assert answer.status_code == 200, answer.text
        job = answer.json()["job"]
        assert job["status"] == "CANCELED"
        assert job["received"] == users
        assert job["received"] == job["enqueued"] + job["failures"] + job["canceled"]
        assert job["canceled"] > 0, "the job finished before the cancel: nothing to prove"
        ids = [s["messageId"] for s in sends_of(topology, job_id)]
        assert len(ids) == len(set(ids)) == job["enqueued"]
        # Final: nothing more is sent, nothing moves, a second cancel answers the same.
        time.sleep(3)
        assert len(sends_of(topology, job_id)) == job["enqueued"]
        assert job_of(http, job_id) == job
        again = http.post(f"/bulk/{job_id}/cancel")
        assert (again.status_code, again.json()["job"]) == (200, job)
        # The users never sent are CANCELED on the users page; the sent ENQUEUED.
        last = http.get(
            f"/bulk/{job_id}/users", params={"cursor": encode_cursor(job_id, users - 100)}
        ).json()
        assert {item["status"] for item in last["items"]} == {"CANCELED"}
        first = http.get(f"/bulk/{job_id}/users").json()
        assert {item["status"] for item in first["items"]} == {"ENQUEUED"}
        # The lifecycle event and the metrics say the same.
        last_event = statuses(topology, job_id)[-1]
        assert (last_event["status"], last_event["previous"], last_event["canceled"]) == (
            "CANCELED",
            "PROCESSING",
            job["canceled"],
        )
        assert metric(workers, "bulkstream_users_canceled_total") == job["canceled"]
        assert metric(workers, "bulkstream_job_control_settle_seconds_count") == 1
        print(f"cancel settled in {settle:.2f} s; {job}")


def test_cancel_of_a_created_job_sends_nothing_and_it_can_no_longer_run(
    api: ApiProcess, client: Client, topology: Settings
) -> None:
    with api.client() as http:
        job_id = create(http)
        http.post(f"/bulk/{job_id}", json={"users": [{"to": {"user_id": "a"}}]})
        answer = http.post(f"/bulk/{job_id}/cancel")
        assert answer.status_code == 200, answer.text
        job = answer.json()["job"]
        assert (job["status"], job["canceled"], job["enqueued"]) == ("CANCELED", 1, 0)
        run = http.post(f"/bulk/{job_id}/run")
        assert run.status_code == 400
        assert run.json()["type"] == "invalid_request_error"
        assert "canceled" in run.json()["message"]
        late = http.post(f"/bulk/{job_id}", json={"users": [{"to": {"user_id": "b"}}]})
        assert late.status_code == 400
        items = http.get(f"/bulk/{job_id}/users").json()["items"]
        assert [i["status"] for i in items] == ["CANCELED"]
    assert sends_of(topology, job_id) == []


# -- pause and resume -------------------------------------------------------------


def test_pause_holds_for_5_s_and_resume_completes_every_user_once(
    topology: Settings, tmp_path: Path, start_worker: Callable[..., WorkerProcess], client: Client
) -> None:
    """Paused on the Kafka command topic, resumed over HTTP: while paused, the committed
    sends do not move; after the resume the job completes, every user sent once."""
    users = 60_000
    # 8,000 users out at once: the pause lands with most of the job still to send.
    with stack(topology, tmp_path, start_worker, fanout_window_pages=16) as (_, http):
        job_id = generated_job(http, client, users)
        assert http.post(f"/bulk/{job_id}/run").status_code == 202
        wait_job(http, job_id, lambda j: j["enqueued"] > 0, 120)
        pause = client.send({"kind": "pause", "jobId": job_id})
        assert client.result(pause.command_id, timeout=120).ok
        job = job_of(http, job_id)
        assert job["status"] == "PAUSED"
        assert 0 < job["enqueued"] < users
        held = len(sends_of(topology, job_id))
        assert held == job["enqueued"]
        time.sleep(5)
        assert len(sends_of(topology, job_id)) == held
        assert job_of(http, job_id) == job
        assert http.post(f"/bulk/{job_id}/pause").json()["job"] == job  # idempotent
        resume = http.post(f"/bulk/{job_id}/resume")
        assert resume.status_code == 200, resume.text
        assert resume.json()["job"]["status"] in ("PROCESSING", "COMPLETED")
        done = wait_job(http, job_id, lambda j: j["status"] == "COMPLETED", 300)
        assert done["enqueued"] == users
    ids = [s["messageId"] for s in sends_of(topology, job_id)]
    assert len(ids) == len(set(ids)) == users
    changes = statuses(topology, job_id)
    assert [e["status"] for e in changes] == [
        "CREATED",
        "PROCESSING",
        "PAUSED",
        "PROCESSING",
        "COMPLETED",
    ]
    # Each change carries the job record's version it wrote, its own (webhooks take
    # their id from it: the two PROCESSING are two events).
    versions = [e["version"] for e in changes]
    assert versions == sorted(set(versions)), versions


# -- scheduled runs ---------------------------------------------------------------


def test_a_scheduled_run_fires_on_time_after_both_workers_were_sigkilled(
    topology: Settings, tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    """The schedule lives in Kafka: both workers SIGKILLed and restarted in between,
    the first send is committed within 1 s of `scheduledAt`."""
    with stack(topology, tmp_path, start_worker) as (workers, http):
        job_id = create(http)
        users = [{"to": {"user_id": f"u{i}"}} for i in range(1000)]
        assert http.post(f"/bulk/{job_id}", json={"users": users}).status_code == 200
        at = time.time() + 60
        answer = http.post(f"/bulk/{job_id}/run", json={"scheduledAt": rfc3339(at)})
        assert answer.status_code == 202, answer.text
        job = job_of(http, job_id)
        assert job["status"] == "SCHEDULED"
        assert datetime.fromisoformat(job["scheduledAt"]).timestamp() == pytest.approx(at)
        for worker in workers:
            worker.kill()
        restarted = [start_worker("w1"), start_worker("w2")]
        wait_ready(restarted, settled=True)
        assert time.time() < at - 2, "the workers came back after the schedule was due"
        assert job_of(http, job_id)["status"] == "SCHEDULED"
        assert sends_of(topology, job_id) == []
        patience = at - time.time() + 60
        done = wait_job(http, job_id, lambda j: j["status"] == "COMPLETED", patience)
        assert done["enqueued"] == 1000
    stamps = [t for t, send in read_stamped(topology, topology.topic_sends)]
    assert len(stamps) == 1000
    print(f"first send {stamps[0] - at:+.3f} s from scheduledAt")
    assert at <= stamps[0] + 0.005  # record times are in ms
    assert stamps[0] - at <= 1.0


# -- send-rate limits -------------------------------------------------------------


def test_a_rate_limited_run_of_20000_users_at_2000_per_second(
    topology: Settings, tmp_path: Path, start_worker: Callable[..., WorkerProcess], client: Client
) -> None:
    """Over any 5 s window at most 1.1 x 5N sends, by their record timestamps; the
    whole run at least received / N seconds minus 5 %."""
    users, rate = 20_000, 2000
    with stack(topology, tmp_path, start_worker) as (_, http):
        job_id = generated_job(http, client, users)
        answer = http.post(f"/bulk/{job_id}/run", json={"sendsPerSecond": rate})
        assert answer.status_code == 202, answer.text
        assert job_of(http, job_id)["sendsPerSecond"] == rate
        wait_job(http, job_id, lambda j: j["status"] == "COMPLETED", 120)
    stamps = [t for t, send in read_stamped(topology, topology.topic_sends)]
    assert len(stamps) == users
    span = stamps[-1] - stamps[0]
    busiest = 0
    start = 0
    for end, at in enumerate(stamps):  # the most sends within any 5 s window
        while at - stamps[start] >= 5.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    per_second = Counter(int(at - stamps[0]) for at in stamps)
    print(f"span {span:.2f} s; busiest 5 s window {busiest} sends (limit {1.1 * 5 * rate})")
    print("sends per second:", [per_second[s] for s in sorted(per_second)])
    assert busiest <= 1.1 * 5 * rate
    assert span >= 0.95 * users / rate


# -- dry runs ---------------------------------------------------------------------


def test_a_dry_run_resolves_the_sends_without_writing_one_then_the_real_run(
    api: ApiProcess, topology: Settings
) -> None:
    users = [{"to": {"user_id": f"u{i}"}, "data": {"i": i}} for i in range(14)]
    users[3:3] = [{"profile": {"nickname": "no address"}}, {"to": {"email": "not-an-email"}}]
    with api.client() as http:
        created = http.post(
            "/bulk", json={"message": {"template": "T", "data": {"g": 1}, "brand": "B"}}
        )
        job_id = created.json()["jobId"]
        http.post(f"/bulk/{job_id}", json={"users": users, "metadata": {"m": 1}})
        answer = http.post(f"/bulk/{job_id}/run", json={"dryRun": True})
        assert answer.status_code == 202, answer.text
        job = job_of(http, job_id)
        assert job["status"] == "CREATED"
        dry = job["dryRun"]
        assert (dry["status"], dry["routable"], dry["unroutable"], len(dry["sample"])) == (
            "COMPLETED",
            14,
            2,
            10,
        )
        assert all(send["messageId"] is None for send in dry["sample"])
        assert sends_of(topology, job_id) == []
        assert http.post(f"/bulk/{job_id}/run").status_code == 202
        wait_job(http, job_id, lambda j: j["status"] == "COMPLETED", 60)
        again = http.post(f"/bulk/{job_id}/run", json={"dryRun": True})
        assert again.status_code == 400
    real = {s["position"]: s for s in sends_of(topology, job_id)}
    assert len(real) == 14
    for sample in dry["sample"]:
        sent = real[sample["position"]]
        # The same bytes as the real send, but for the messageId a dry run never burns.
        assert orjson.dumps({**sent, "messageId": None}) == orjson.dumps(sample)


def test_the_cli_runs_dry_pauses_and_cancels_over_kafka(
    api: ApiProcess, topology: Settings
) -> None:
    with api.client() as http:
        job_id = create(http)
        http.post(f"/bulk/{job_id}", json={"users": [{"to": {"user_id": "a"}}]})

    def cli(*args: str) -> dict[str, Any]:
        done = run_cli(topology, *args, job_id, "--tenant", "acme")
        out: dict[str, Any] = orjson.loads(done.stdout) if done.stdout.strip() else {}
        out["exit"] = done.returncode
        return out

    dry = cli("run", "--dry-run")
    assert (dry["exit"], dry["job"]["dryRun"]["routable"]) == (0, 1)
    refused = cli("pause")  # not run yet
    assert (refused["exit"], refused["result"]["errorType"]) == (1, "not_allowed")
    canceled = cli("cancel")
    assert (canceled["exit"], canceled["job"]["status"], canceled["job"]["canceled"]) == (
        0,
        "CANCELED",
        1,
    )


# -- invalid input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"scheduledAt": "tomorrow"}, "scheduledAt"),
        ({"scheduledAt": "2026-12-01T17:00:00"}, "scheduledAt"),  # no offset
        ({"scheduledAt": 1764608400}, "scheduledAt"),
        ({"sendsPerSecond": 0}, "sendsPerSecond"),
        ({"sendsPerSecond": -5}, "sendsPerSecond"),
        ({"sendsPerSecond": 1.5}, "sendsPerSecond"),
        ({"dryRun": "yes"}, "dryRun"),
        ({"dryRun": True, "sendsPerSecond": 10}, "dryRun"),
        ({"speed": 10}, "speed"),
    ],
)
def test_invalid_run_options_are_a_400_naming_the_field(
    api: ApiProcess, body: dict[str, Any], names: str
) -> None:
    with api.client() as http:
        job_id = create(http)
        answer = http.post(f"/bulk/{job_id}/run", json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["type"] == "invalid_request_error"
        assert names in answer.json()["message"]
        assert job_of(http, job_id)["status"] == "CREATED"


def test_a_run_without_a_body_runs_and_one_of_whitespace_alone_is_a_400(
    api: ApiProcess,
) -> None:
    """Whitespace alone is not JSON (RFC 8259 wants a value): schemathesis sent a bare
    newline as `application/json`, and it was taken as no body (202)."""
    with api.client() as http:
        job_id = create(http)
        for blank in (b"\n", b" \t\r\n"):
            answer = http.post(
                f"/bulk/{job_id}/run", content=blank, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 400, answer.text
            assert answer.json()["type"] == "invalid_request_error"
        assert job_of(http, job_id)["status"] == "CREATED"
        empty = http.post(
            f"/bulk/{job_id}/run", content=b"", headers={"content-type": "application/json"}
        )
        assert empty.status_code == 202, empty.text


def test_control_that_the_job_does_not_allow_is_a_clear_4xx(api: ApiProcess) -> None:
    with api.client() as http, api.client("globex") as other:
        job_id = create(http)
        for verb in ("pause", "resume"):
            answer = http.post(f"/bulk/{job_id}/{verb}")
            assert answer.status_code == 400, answer.text
            assert answer.json()["type"] == "invalid_request_error"
            assert "has not been run" in answer.json()["message"]
        body = http.post(f"/bulk/{job_id}/cancel", json={"reason": "x"})
        assert body.status_code == 400
        for verb in ("cancel", "pause", "resume"):
            foreign = other.post(f"/bulk/{job_id}/{verb}")
            assert foreign.status_code == 404, foreign.text
            missing = http.post(f"/bulk/1-00000000-nosuchjob/{verb}")
            assert missing.status_code == 404
        assert http.post(f"/bulk/{job_id}/run").status_code == 202
        wait_job(http, job_id, lambda j: j["status"] == "COMPLETED", 60)
        late = http.post(f"/bulk/{job_id}/cancel")
        assert late.status_code == 400
        assert "COMPLETED" in late.json()["message"]
        # Courier's own view of a job that used none of it: Courier's five fields.
        assert set(job_of(http, job_id)) == {
            "definition",
            "enqueued",
            "failures",
            "received",
            "status",
        }
