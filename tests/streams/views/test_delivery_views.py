"""Finding a reported message by its id in the delivery views, on a real Redis: an id
that carries its position is checked against the jobs of its second that joined
their set (no index field a message); any other is found by the index; another
tenant's, a made-up one or one never reported is not found."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import hiredis
import orjson

from schemas.views import JobStatus
from streams.aggregate.state import JobState
from streams.ids import message_id, position_in, positional_message_id
from streams.views import Views, keys
from streams.views.connection import redis_from_url
from streams.views.delivery import DeliveryViews, bucket_fields


def hiredis_packed(*args: Any) -> bytes:
    """A command as hiredis packs it (its stub types a one-element tuple)."""
    packed: bytes = hiredis.pack_command(args)
    return packed


CREATED = 1_764_000_000.25
A, B, C = "1-6930bc00-aaaaaaaaaaaaaaaaaaaaaaaa", "1-6930bc00-bbbbbbbbbbbbbbbbbbbbbbbb", "1-c"
ENTRY = orjson.dumps({"status": "SENT", "at": 1, "times": {"SENT": 1}}).decode()


def test_position_in_checks_the_whole_id() -> None:
    id_7 = positional_message_id(CREATED, A, 7)
    assert position_in(A, id_7) == 7
    assert position_in(B, id_7) is None  # another job's digest
    assert position_in(A, id_7 + "0") is None
    assert position_in(A, "x" + id_7[1:]) is None
    assert position_in(A, id_7.upper()) is None
    assert position_in(A, message_id(CREATED, A, "user-7")) is None  # an `identity` id


def test_bucket_commands_are_the_hsets_and_expires_hiredis_packs() -> None:
    entries = [(p, positional_message_id(CREATED, A, p), ENTRY) for p in (3, 250, 7, 99)]
    entries.append((120, positional_message_id(CREATED, A, 120), '{"reason":"é"}'))
    grouped = bucket_fields(entries)
    assert grouped.buckets == [0, 2, 1]
    assert grouped.fields == [3, 1, 1]
    commands = grouped.commands(lambda n: f"b:{n}", 60)
    expected = []
    for bucket, members in [(0, (3, 7, 99)), (2, (250,)), (1, (120,))]:
        flat = [part for p, _, e in entries if p in members for part in (str(p), e)]
        expected += [
            hiredis_packed("HSET", f"b:{bucket}", *flat),
            hiredis_packed("EXPIRE", f"b:{bucket}", 60),
        ]
    assert commands == expected


def test_messages_are_found_by_the_ids_they_carry_or_by_the_index(
    redis_url: str, unique: str
) -> None:
    carried_a = [(p, positional_message_id(CREATED, A, p), ENTRY) for p in (3, 250)]
    carried_b = [(p, positional_message_id(CREATED, B, p), ENTRY) for p in (3,)]
    indexed_c = [(4, message_id(CREATED, C, "user-4"), ENTRY)]

    async def scenario() -> list[object]:
        client = redis_from_url(redis_url)
        views = DeliveryViews(client, unique, 60)
        try:
            await views.write_entries("t1", A, carried_a, carried=True)
            await views.write_entries("t1", B, carried_b, carried=True)
            await views.write_entries("t1", C, indexed_c)
            return [
                await views.find("t1", carried_a[0][1]),
                await views.find("t1", carried_a[1][1]),
                await views.find("t1", carried_b[0][1]),
                await views.find("t1", indexed_c[0][1]),
                await views.find("t2", carried_a[0][1]),  # another tenant's
                await views.find("t1", positional_message_id(CREATED, A, 4)),  # never reported
                await views.find("t1", positional_message_id(CREATED, "1-x", 3)),  # no such job
                await views.entry("t1", carried_a[1][1]),
                await views.entry("t1", positional_message_id(CREATED, A, 4)),
                await client.ttl(keys.message_jobs(unique, "t1", carried_a[0][1])),
            ]
        finally:
            await client.aclose()

    found = asyncio.run(scenario())
    assert found[:4] == [(A, 3), (A, 250), (B, 3), (C, 4)]
    # Found by its digest, but never reported: it has no entry, so it reads as unknown.
    assert found[4:7] == [None, (A, 4), None]
    assert found[7] == orjson.loads(ENTRY)
    assert found[8] is None
    assert 0 < found[9] <= 60  # type: ignore[operator]


def test_a_job_s_counts_never_move_back_to_an_earlier_report(redis_url: str, unique: str) -> None:
    """Counts written with the offset of the last report they fold: a slower writer's
    older counts leave the newer ones in place; entries are written either way."""
    job_key = keys.job(unique, "t1", A)
    entries = [(p, positional_message_id(CREATED, A, p), ENTRY) for p in (1, 2)]

    async def scenario() -> tuple[list[Any], object]:
        client = redis_from_url(redis_url)
        views = DeliveryViews(client, unique, 60)
        try:
            seen = []
            for counts, upto in [({"SENT": 2}, 10), ({"SENT": 1}, 5), ({"DELIVERED": 2}, 12)]:
                await views.write_entries("t1", A, entries, counts, upto, carried=True)
                seen.append(await client.hmget(job_key, ["delivery", "deliveryUpto"]))
            return seen, await views.entry("t1", entries[1][1])
        finally:
            await client.aclose()

    (first, older, newer), entry = asyncio.run(scenario())
    assert [orjson.loads(first[0]), int(first[1])] == [{"SENT": 2}, 10]
    assert older == first  # the counts of report 5 came after those of report 10
    assert [orjson.loads(newer[0]), int(newer[1])] == [{"DELIVERED": 2}, 12]
    assert entry == orjson.loads(ENTRY)


def test_counts_folded_for_a_job_without_views_never_make_a_job_of_them(
    redis_url: str, unique: str
) -> None:
    """A job's views expired or were purged (or Redis lost them): the counts a fold
    writes then make a hash that reads as no job and expires. Once the job is written
    (a rebuild), it shows them and is kept while it runs; finished, it expires."""
    job_key = keys.job(unique, "t1", A)
    job = JobState(
        tenant="t1",
        definition={"template": "T"},
        send={},
        created_at=CREATED,
        create_command="c",
        applied_offset=0,
        received=2,
        status=JobStatus.PROCESSING,
    )

    async def scenario() -> tuple[Any, ...]:
        client = redis_from_url(redis_url)
        views = Views(client, unique, 3600)
        try:
            await views.delivery.write_entries("t1", A, [], {"SENT": 2}, 10)
            alone = (await views.read_job("t1", A), await client.ttl(job_key))
            await views.write_job(A, job)
            running = (await views.read_job("t1", A), await client.ttl(job_key))
            job.status, job.completed_at = JobStatus.COMPLETED, time.time()
            await views.write_job(A, job)
            return alone, running, await client.ttl(job_key)
        finally:
            await client.aclose()

    (alone, alone_ttl), (running, running_ttl), finished_ttl = asyncio.run(scenario())
    assert alone is None
    assert 0 < alone_ttl <= 3600
    assert running is not None
    assert running.status is JobStatus.PROCESSING
    assert running.delivery == {"SENT": 2}
    assert running_ttl == -1
    assert 0 < finished_ttl <= 3600
