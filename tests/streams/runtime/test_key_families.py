"""patches/key_families.py: the partition's own keys (and faust's offset key) live in
a RocksDB column family of their own, so a file of a job's keys spans that job's keys
only; faust reads, writes and restores each key in its family; a store made without
the families is rebuilt from the changelog."""

from __future__ import annotations

from pathlib import Path

from streams.aggregate.command_feed import CommandMessage
from streams.aggregate.pipeline import STATE_FAMILIES
from streams.aggregate.state import (
    DUE_PREFIX,
    PARTITION_KEYS,
    batch_key,
    cursor_key,
    job_key,
    outcomes_key,
    scan_prefix,
)
from streams.runtime.access import partition_db
from streams.runtime.app import Runtime, deliveries_of
from streams.runtime.patches.current_event import in_event
from streams.runtime.patches.key_families import OFFSET_KEY
from streams.runtime.patches.stale_stores import applied_offset, tables_dir
from streams.settings import Settings
from tests.streams.runtime.conftest import end_offset, run, running, runtime_for

PARTITION = 2
JOB = "1-keyfamilies"
BLOCKS = 200


def write_a_job(runtime: Runtime, topology: Settings) -> None:
    """As the aggregate does for a job: its state, a batch record, blocks of message
    states, and the partition's cursor."""
    with in_event(CommandMessage(topology.topic_commands, PARTITION, 0, None, None)):
        runtime.state[cursor_key(PARTITION)] = b"41"
        runtime.state[job_key(JOB)] = b"{}"
        runtime.state[batch_key(JOB, 41)] = b"[]"
        for block in range(BLOCKS):
            runtime.state[outcomes_key(JOB, block)] = b"states"


def where(runtime: Runtime, key: bytes) -> list[str]:
    """The families of the partition's store that hold `key`."""
    families: tuple[str | None, ...] = (None, PARTITION_KEYS)
    return [
        family or "default"
        for family in families
        if partition_db(runtime.state, PARTITION, family).get(key) is not None
    ]


def test_a_file_of_a_jobs_keys_spans_that_jobs_keys_only(topology: Settings) -> None:
    """Without the families, the file RocksDB flushes spans from the cursor (a partition
    key: it sorts before every job id) to faust's offset key (after them): every
    compaction of level 0 then rewrites every file of the level below."""

    async def scenario() -> tuple[list[tuple[bytes, bytes]], dict[bytes, list[str]], bytes]:
        runtime = runtime_for(topology, key_families=STATE_FAMILIES)
        async with running(runtime):
            write_a_job(runtime, topology)
            await deliveries_of(runtime.app).settled()  # faust writes its offset key then
            db = partition_db(runtime.state, PARTITION)
            # Reading a family flushes nothing (a rocksdict handle flushes its family's
            # memtable when dropped: the store keeps its handles).
            for _ in range(3):
                keys = partition_db(runtime.state, PARTITION, PARTITION_KEYS)
                assert not list(scan_prefix(keys, DUE_PREFIX))
            assert db.live_files() == []
            db.flush()
            spans = [(f["start_key"], f["end_key"]) for f in db.live_files()]
            keys = [cursor_key(PARTITION), OFFSET_KEY, batch_key(JOB, 41), job_key(JOB)]
            places = {key: where(runtime, key) for key in keys}
            with in_event(CommandMessage(topology.topic_commands, PARTITION, 0, None, None)):
                read = runtime.state[cursor_key(PARTITION)]
        return spans, places, read

    spans, places, read = run(scenario())
    assert spans == [(batch_key(JOB, 41), outcomes_key(JOB, BLOCKS - 1))]
    assert places == {
        cursor_key(PARTITION): [PARTITION_KEYS],
        OFFSET_KEY: [PARTITION_KEYS],
        batch_key(JOB, 41): ["default"],
        job_key(JOB): ["default"],
    }
    assert read == b"41"


def test_a_store_made_without_the_families_is_rebuilt_into_them(topology: Settings) -> None:
    """A worker of the version before: one family. Its successor discards that store
    (its keys would sit unseen in the default family) and restores the partition from
    the changelog, each key into its family, faust's applied offset with them."""

    async def scenario() -> tuple[dict[bytes, list[str]], int | None, int]:
        before = runtime_for(topology)
        async with running(before):
            write_a_job(before, topology)
            await deliveries_of(before.app).settled()

        after = runtime_for(topology, key_families=STATE_FAMILIES)
        async with running(after):
            keys = [cursor_key(PARTITION), batch_key(JOB, 41), outcomes_key(JOB, 7)]
            places = {key: where(after, key) for key in keys}
        changelog = after.state.changelog_topic.get_topic_name()
        records = end_offset(topology, changelog, PARTITION)
        store = tables_dir(topology.model_copy(update={"worker_id": "w1"}))
        offset = applied_offset(Path(store, f"state-{PARTITION}.db"), STATE_FAMILIES)
        return places, offset, records

    places, offset, records = run(scenario())
    assert places == {
        cursor_key(PARTITION): [PARTITION_KEYS],
        batch_key(JOB, 41): ["default"],
        outcomes_key(JOB, 7): ["default"],
    }
    assert offset == records - 1
