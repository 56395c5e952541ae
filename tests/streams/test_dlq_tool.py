"""`bulkstream dlq` against the real stack: the dead-letter topics listed with each
letter's reason, and letters replayed once their cause is mended (reports that came
before their job ran are folded, once however often replayed); a poison command
replayed comes back to its DLQ."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Producer

from schemas.commands import CreateJob, JobMessage
from streams.ids import new_command_id, new_job_id, positional_message_id
from streams.kafka.config import producer_config
from streams.ops.dlq import parse_since
from streams.settings import Settings
from streams.testing.processes import WorkerProcess, cli, wait_for
from streams.testing.stack import TEMPLATE, create, stack, wait_job
from streams.testing.topics import read_dlq
from streams.views import keys
from tests.streams.test_delivery_outcomes import AT, produce, report


def bulkstream(settings: Settings, *args: str) -> list[Any]:
    """`bulkstream <args>` as its own process; every JSON line it printed."""
    done = cli(settings, *args, timeout=180)
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]


def sent(message: str, job_id: str, status: str = "SENT") -> tuple[bytes | None, bytes]:
    """A report of the message as a record of the delivery-status topic."""
    return job_id.encode(), orjson.dumps(report(message, job_id, status, AT))


def test_reports_that_came_before_the_run_are_folded_once_replayed(
    topology: Settings,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    with stack(topology, tmp_path, start_worker) as (_, http):
        job_id = create(http)
        users = [{"to": {"user_id": f"u{i}"}} for i in range(3)]
        assert http.post(f"/bulk/{job_id}", json={"users": users}).status_code == 200
        stamp = redis_client.hget(keys.job(topology.redis_prefix, "acme", job_id), "createdAt")
        assert isinstance(stamp, bytes)
        created_at = float(stamp)
        ids = [positional_message_id(created_at, job_id, p) for p in range(3)]
        # A provider's reports, in before the job was run (it has sent nothing yet),
        # and one for a message the job does not have.
        produce(topology, [sent(m, job_id) for m in ids])
        produce(topology, [sent(ids[0][:-24] + "f" * 24, job_id)])
        assert len(read_dlq(topology, 4, topic=topology.topic_delivery_status_dlq)) == 4

        listed = bulkstream(topology, "dlq", "list", "reports")
        assert Counter(letter["reason"] for letter in listed) == {
            "not-sent": 3,
            "unknown-message": 1,
        }
        for letter in listed:
            assert letter["key"] == job_id
            assert letter["source"].startswith(f"{topology.topic_delivery_status}/")
            assert letter["error"]
            assert letter["at"].endswith("Z")
        later = ("--since", "2999-01-01T00:00:00Z")
        assert bulkstream(topology, "dlq", "list", "reports", *later) == []

        assert http.post(f"/bulk/{job_id}/run").status_code == 202
        wait_job(http, job_id, lambda job: job["status"] == "COMPLETED", 60)
        dry = bulkstream(topology, "dlq", "replay", "reports", "--reason", "not-sent", "--dry-run")
        assert dry == [
            {
                "topic": topology.topic_delivery_status_dlq,
                "to": topology.topic_delivery_status,
                "replayed": 0,
                "matched": 3,
                "byReason": {"not-sent": 3},
                "unreadable": 0,
                "dryRun": True,
            }
        ]
        for _ in range(2):  # a second replay folds nothing more
            [summary] = bulkstream(topology, "dlq", "replay", "reports", "--reason", "not-sent")
            assert (summary["replayed"], summary["byReason"]) == (3, {"not-sent": 3})
        wait_job(http, job_id, lambda job: (job.get("delivery") or {}).get("SENT") == 3, 60)
        # Reports of a partition are folded in order: once this one is, both replays were.
        produce(topology, [sent(ids[0], job_id, "DELIVERED")])
        job = wait_job(
            http, job_id, lambda job: (job.get("delivery") or {}).get("DELIVERED") == 1, 60
        )
        assert {k: v for k, v in job["delivery"].items() if v} == {"SENT": 2, "DELIVERED": 1}
        # Still dead-lettered: the unknown message, and nothing the replays brought back.
        assert [letter["reason"] for letter in bulkstream(topology, "dlq", "list", "reports")] == [
            letter["reason"] for letter in listed
        ]


def test_a_poison_command_replayed_comes_back_with_its_reason(
    topology: Settings,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    with stack(topology, tmp_path, start_worker):
        producer = Producer(producer_config(topology))
        producer.produce(topology.topic_commands, key=b"job-x", value=b"{not json")
        assert producer.flush(30) == 0
        read_dlq(topology, 1)
        [letter] = bulkstream(topology, "dlq", "list", "commands")
        assert (letter["reason"], letter["key"], letter["bytes"]) == ("undecodable", "job-x", 9)

        [summary] = bulkstream(topology, "dlq", "replay", "commands")
        assert summary["replayed"] == 1
        dead = read_dlq(topology, 2)
        assert [headers["x-bulkstream-reason"] for _, headers, _ in dead] == [b"undecodable"] * 2
        listed = bulkstream(topology, "dlq", "list", "commands")
        assert len(listed) == 2
        assert listed[1]["source"].startswith(f"{topology.topic_commands}/")


def test_a_command_keyed_wrongly_comes_back_until_replayed_with_its_job_id_as_key(
    topology: Settings,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    job_id = new_job_id()
    command = CreateJob(
        command_id=new_command_id(),
        tenant="acme",
        job_id=job_id,
        message=JobMessage.model_validate(TEMPLATE),
        created_at=time.time(),
    )
    with stack(topology, tmp_path, start_worker) as (_, http):
        producer = Producer(producer_config(topology))
        producer.produce(
            topology.topic_commands, key=b"not-the-job", value=orjson.dumps(command.to_wire())
        )
        assert producer.flush(30) == 0
        read_dlq(topology, 1)

        [summary] = bulkstream(topology, "dlq", "replay", "commands")  # as it was: again
        assert summary["replayed"] == 1
        assert "rekeyed" not in summary
        assert [h["x-bulkstream-reason"] for _, h, _ in read_dlq(topology, 2)] == [b"wrong-key"] * 2
        assert http.get(f"/bulk/{job_id}").status_code == 404

        wrong = ("--reason", "wrong-key", "--rekey")
        [dry] = bulkstream(topology, "dlq", "replay", "commands", *wrong, "--dry-run")
        assert (dry["matched"], dry["replayed"], dry["rekeyed"]) == (2, 0, 2)
        [summary] = bulkstream(topology, "dlq", "replay", "commands", *wrong)
        assert (summary["replayed"], summary["rekeyed"], summary["unreadable"]) == (2, 2, 0)
        found = wait_for(
            lambda: (lambda got: got if got.status_code == 200 else None)(
                http.get(f"/bulk/{job_id}")
            ),
            60,
            "the job the replayed command creates",
        )
        assert found.json()["job"]["definition"]["message"] == TEMPLATE["message"]
        # Nothing more came back to the DLQ.
        assert len(bulkstream(topology, "dlq", "list", "commands")) == 2

        refused = cli(topology, "dlq", "replay", "webhooks", "--rekey", timeout=60)
        assert refused.returncode == 2
        assert "--rekey" in refused.stderr


def test_since_takes_an_rfc_3339_time_with_its_zone() -> None:
    assert parse_since("2026-12-03T10:00:00Z") == 1_796_292_000_000
    assert parse_since("2026-12-03T11:00:00+01:00") == 1_796_292_000_000
    assert parse_since(None) is None
    with pytest.raises(ValueError, match="no time zone"):
        parse_since("2026-12-03T10:00:00")
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_since("yesterday")
