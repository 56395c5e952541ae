"""Command semantics of the job aggregate: errors, tenants, replay-safety, poison input."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from confluent_kafka import Producer

from streams.kafka.config import producer_config
from streams.kafka.producer import complete_command
from streams.kafka.topics import MAX_MESSAGE_BYTES
from streams.settings import Settings
from streams.testing.client import Client
from streams.testing.processes import WorkerProcess, wait_for
from streams.testing.topics import read_dlq, read_topic

USERS = [{"to": {"user_id": f"u{i}"}} for i in range(5)]


def test_errors_of_each_command(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    missing = client.result(client.ingest("1-no-such-job", USERS).command_id)
    assert (missing.ok, missing.error_type) == (False, "not_found")
    assert client.result(client.run("1-no-such-job").command_id).error_type == "not_found"

    job_id = client.create({"template": "T"})
    client.result(client.ingest(job_id, USERS).command_id)
    other = client.send({"kind": "create", "jobId": job_id, "message": {"template": "OTHER"}})
    conflict = client.result(other.command_id)
    assert (conflict.ok, conflict.error_type) == (False, "conflict")

    first_run = client.result(client.run(job_id).command_id)
    second_run = client.result(client.run(job_id).command_id)
    assert first_run.ok
    assert (second_run.ok, second_run.error_type) == (False, "already_run")
    late = client.result(client.ingest(job_id, [{"to": {"user_id": "late"}}]).command_id)
    assert (late.ok, late.error_type) == (False, "already_run")

    job = client.wait_status(job_id, "COMPLETED", 60)
    assert (job.received, job.enqueued) == (5, 5)
    # The conflicting create changed nothing (the view adds the `event` Courier's SDKs need).
    assert job.definition == {"template": "T", "event": "T"}
    sends = read_topic(topology, topology.topic_sends, expected=5, idle=3)
    assert len(sends) == 5  # the second run had no effect


def test_commands_compressed_by_their_producer_are_applied(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    """An upstream producer chooses its own compression.type: the worker reads
    every codec Kafka has, not only the gzip that Python's stdlib brings."""
    start_worker()
    job_id = client.create({"template": "T"})
    sent = []
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        producer = Producer(producer_config(topology) | {"compression.type": codec})
        users = [{"to": {"user_id": f"{codec}-{i}"}} for i in range(100)]
        command = complete_command(
            {"kind": "ingest", "jobId": job_id, "users": users}, client.tenant
        )
        value = orjson.dumps(command.to_wire())
        producer.produce(topology.topic_commands, key=job_id.encode(), value=value)
        assert producer.flush(30) == 0
        sent.append(command.command_id)
    for command_id in sent:
        result = client.result(command_id, job_id=job_id)
        assert (result.ok, result.total) == (True, 100)
    job = client.job(job_id)
    assert job is not None
    assert job.received == 400


def test_a_worker_opens_its_dead_letter_producer_when_it_starts(
    topology: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    """Not at the first poison command: a new producer's first record waits for
    its connection and producer id, and the commit of what follows waits for it."""
    worker = start_worker()
    opened = f"dead letters go to {topology.topic_commands_dlq}".encode()
    wait_for(lambda: opened in worker.log_path.read_bytes(), 60, "the DLQ producer")
    assert b"command to DLQ" not in worker.log_path.read_bytes()


def test_tenants_cannot_see_or_touch_each_others_jobs(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    job_id = client.create({"template": "T"})
    client.result(client.ingest(job_id, USERS).command_id)

    with Client(topology, tenant="globex") as intruder:
        ingest = intruder.result(intruder.ingest(job_id, [{"to": {"user_id": "x"}}]).command_id)
        run = intruder.result(intruder.run(job_id).command_id)
        assert (ingest.error_type, run.error_type) == ("not_found", "not_found")
        assert intruder.job(job_id) is None
    job = client.job(job_id)
    assert job is not None
    assert job.received == 5
    assert job.status == "CREATED"


def test_the_same_command_twice_changes_nothing_the_second_time(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    create = {
        "kind": "create",
        "jobId": "1-replay-job",
        "commandId": "c-create",
        "message": {"template": "T"},
        "createdAt": 1.7e9,
    }
    ingest = {"kind": "ingest", "jobId": "1-replay-job", "commandId": "c-ingest", "users": USERS}
    run = {"kind": "run", "jobId": "1-replay-job", "commandId": "c-run"}
    for record in (create, create, ingest, ingest):
        client.send(record)
    first = client.result("c-ingest")
    wait_for(
        lambda: len(read_topic(topology, topology.topic_command_results)) >= 4, 30, "4 results"
    )
    assert (first.ok, first.total, first.errors) == (True, 5, [])
    job = client.job("1-replay-job")
    assert job is not None
    assert (job.received, job.status) == (5, "CREATED")
    results = [v for _, v, _ in read_topic(topology, topology.topic_command_results)]
    ingest_results = [r for r in results if r["commandId"] == "c-ingest"]
    # The redelivery is answered with the first answer, not with five duplicates.
    assert ingest_results == [ingest_results[0]] * 2
    assert ingest_results[0]["total"] == 5
    assert [r["ok"] for r in results if r["commandId"] == "c-create"] == [True, True]

    client.send(run)
    client.send(run)
    client.wait_status("1-replay-job", "COMPLETED", 60)
    sends = read_topic(topology, topology.topic_sends, expected=5, idle=3)
    assert len(sends) == 5
    run_results = [
        v
        for _, v, _ in read_topic(topology, topology.topic_command_results)
        if v["commandId"] == "c-run"
    ]
    assert len(run_results) == 2
    assert all(r["ok"] for r in run_results)
    users = client.users("1-replay-job")
    assert [u["status"] for u in users] == ["ENQUEUED"] * 5


def test_poison_commands_go_to_the_dlq_and_the_worker_goes_on(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    poison = [
        (b"job-1", b"{not json"),
        (
            b"job-2",
            orjson.dumps({"kind": "explode", "jobId": "job-2", "commandId": "c", "tenant": "t"}),
        ),
        (
            b"job-3",
            orjson.dumps(
                {
                    "kind": "ingest",
                    "jobId": "job-3",
                    "commandId": "c",
                    "tenant": "t",
                    "users": "nope",
                }
            ),
        ),
        (
            b"another-key",
            orjson.dumps({"kind": "run", "jobId": "job-4", "commandId": "c", "tenant": "t"}),
        ),
        (None, orjson.dumps({"kind": "run", "jobId": "job-5", "commandId": "c", "tenant": "t"})),
        (b"job-6", b"x" * (10 * 1024 * 1024)),
    ]
    for key, value in poison:
        client.producer.send_raw(key, value)
    client.producer.flush()
    job_id = client.create({"template": "T"})
    good = client.result(client.ingest(job_id, USERS).command_id)
    assert good.total == 5

    dlq = read_dlq(topology, expected=len(poison))
    assert len(dlq) == len(poison)
    assert dict(poison) == {key: value for key, _, value in dlq}
    reasons = {key: headers["x-bulkstream-reason"] for key, headers, _ in dlq}
    assert reasons == {
        b"job-1": b"undecodable",
        b"job-2": b"invalid",
        b"job-3": b"invalid",
        b"another-key": b"wrong-key",
        None: b"wrong-key",
        b"job-6": b"oversized",  # 10 MB, over BULKSTREAM_MAX_COMMAND_BYTES (8 MB)
    }
    errors = {key: headers["x-bulkstream-error"].decode() for key, headers, _ in dlq}
    assert errors[b"job-3"] == "ingest.users: Input should be a valid array"
    sources = {headers["x-bulkstream-source"].decode() for _, headers, _ in dlq}
    assert len(sources) == len(poison)
    assert all(s.startswith(f"{topology.topic_commands}/") for s in sources)


def test_a_worker_restoring_the_state_from_the_changelog_still_knows_every_user(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    """The dedupe index has no changelog of its own: a worker with an empty disk
    rebuilds it from the batch records it restores, and still rejects duplicates."""
    first = start_worker("w1")
    job_id = client.create({"template": "T"})
    users = [{"to": {"user_id": f"u{i}"}} for i in range(300)]
    assert client.result(client.ingest(job_id, users[:200]).command_id).total == 200
    first.stop()

    start_worker("w2")  # another worker id: its own, empty data directory
    again = client.result(client.ingest(job_id, users[100:]).command_id)
    assert again.total == 100
    errors = again.errors or []
    assert [e.user["to"]["user_id"] for e in errors] == [f"u{i}" for i in range(100, 200)]
    assert {e.error for e in errors} == {"Duplicate user"}

    client.result(client.run(job_id).command_id)
    job = client.wait_status(job_id, "COMPLETED", 120)
    assert (job.received, job.enqueued) == (300, 300)
    sends = read_topic(topology, topology.topic_sends, expected=300, idle=3)
    assert sorted(value["to"]["user_id"] for _, value, _ in sends) == sorted(
        f"u{i}" for i in range(300)
    )


def test_a_poison_command_as_large_as_a_command_may_be_still_goes_to_the_dlq(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    """The dead letter is the command plus headers: the DLQ must take more than the
    commands topic does, or the largest poison would stop the worker."""
    start_worker()
    key = b"job-huge"
    value = b"{" + b"x" * (MAX_MESSAGE_BYTES - 200)  # as large as fits
    client.producer.send_raw(key, value)
    client.producer.flush()
    job_id = client.create({"template": "T"})
    assert client.result(client.ingest(job_id, USERS).command_id).total == 5
    ((dlq_key, headers, dlq_value),) = read_dlq(topology, expected=1)
    assert (dlq_key, headers["x-bulkstream-reason"]) == (key, b"oversized")
    assert dlq_value == value
