"""Probe: where an ingest command's CPU goes on the worker's loop, step by step.

`python -m bench.ingest_steps [COMMANDS]`: COMMANDS (default 300) ingest commands of
1,000 generated users each, applied in one process as the aggregate applies them,
against a real RocksDB store with the state's options and column families: the
command decoded (`parse_command`), the rules (`rules.ingest`, the dedupe check
included), the users indexed (`DedupeIndex.add`), the batch record encoded and
written, and the users view's writes queued (`ViewWrites.users`, not sent). Prints the median
microseconds a user of each step. The garbage collector is set as a worker sets it
(`streams.ops.worker.tune_gc`). No Kafka, no Redis, no faust: the changelog, the
views' round trips and RocksDB's background work are not in these figures
(`python -m bench --only ingest --profile` has them).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import rocksdict
from redis import asyncio as aioredis

from schemas.commands import CreateJob
from streams.aggregate import rules
from streams.aggregate.decode import parse_command
from streams.aggregate.dedupe import DedupeIndex
from streams.aggregate.paging import batch_encoder
from streams.aggregate.pipeline import STATE_FAMILIES
from streams.aggregate.stage import StateReads
from streams.aggregate.state import batch_key, job_key
from streams.kafka.producer import complete_command
from streams.ops.worker import tune_gc
from streams.runtime.app import STATE_OPTIONS
from streams.runtime.patches.table_readers import BoundedReadersOptions
from streams.testing.users import ingest_commands
from streams.views.writes import ViewWrites

from .env import TENANT

STEPS = ("decode", "rules", "index", "batch record", "users view")


class Store:
    """One partition's store with the state's families, as the aggregate reaches it
    (`streams.runtime.access.partition_db`) and as faust's table routes a key."""

    def __init__(self, path: Path) -> None:
        options: Any = BoundedReadersOptions(**STATE_OPTIONS, use_rocksdict=True).as_options()
        options.create_missing_column_families(True)
        names = STATE_FAMILIES.names
        self.db = rocksdict.Rdict(
            str(path), options=options, column_families={name: options for name in names}
        )
        self.families = {name: self.db.get_column_family(name) for name in names}
        self.data = SimpleNamespace(family_db=self.family_db)

    def family_db(self, partition: int, family: str | None) -> Any:
        return self.db if family is None else self.families[family]

    def get(self, key: bytes) -> bytes | None:
        return self.family_db(0, STATE_FAMILIES.of(key)).get(key)  # type: ignore[no-any-return]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.family_db(0, STATE_FAMILIES.of(key))[key] = value

    def close(self) -> None:
        self.families.clear()
        self.db.close()


def measure(commands: int) -> dict[str, float]:
    job_id = "1-ingest-steps"
    raw = {"kind": "create", "jobId": job_id, "message": {"event": "e"}}
    create = complete_command(raw, TENANT)
    assert isinstance(create, CreateJob)
    wire = [orjson.dumps(c.to_wire()) for c in ingest_commands(job_id, TENANT, 0, commands * 1000)]
    taken: dict[str, list[float]] = {step: [] for step in STEPS}
    with tempfile.TemporaryDirectory(prefix="ingest-steps-") as root:
        store = Store(Path(root, "state-0.db"))
        dedupe = DedupeIndex(store, native=True)
        reads = StateReads(store, dedupe, 0)
        encode = batch_encoder(True)
        # One client, as the worker's views store has: its pipelines are never sent,
        # so no Redis is reached.
        redis = aioredis.Redis()
        created = rules.create(reads, create, 0, "identity").job
        assert created is not None
        store[job_key(job_id)] = created.to_bytes()
        tune_gc()
        for offset, value in enumerate(wire, start=1):
            at = [time.perf_counter()]
            command = parse_command(job_id.encode(), value, len(value), native=True)
            at.append(time.perf_counter())
            effects = rules.ingest(reads, command, offset)  # type: ignore[arg-type]
            assert effects.batch is not None
            assert effects.job is not None
            at.append(time.perf_counter())
            dedupe.add(0, job_id, effects.batch, offset)
            at.append(time.perf_counter())
            store[batch_key(job_id, offset)] = encode(effects.batch, effects.sent)
            at.append(time.perf_counter())
            writes = ViewWrites(redis, "bench", 3600)  # a command's, as `ViewStore.writes`
            writes.users(TENANT, job_id, effects.batch, effects.sent)
            at.append(time.perf_counter())
            store[job_key(job_id)] = effects.job.to_bytes()
            for step, start, end in zip(STEPS, at, at[1:], strict=False):
                taken[step].append((end - start) / len(effects.batch))
        store.close()
    return {step: statistics.median(times) * 1e6 for step, times in taken.items()}


def main(commands: int) -> None:
    medians = measure(commands)
    print(f"{commands:,} commands of 1,000 users, median microseconds a user:")
    for step, value in medians.items():
        print(f"  {step:13} {value:5.2f}")
    print(f"  {'in all':13} {sum(medians.values()):5.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
