"""Probe: what a job's ingest costs RocksDB on a partition that holds other jobs, with
the state's keys in one column family (faust's layout) and in the state's families
(streams/runtime/patches/key_families.py).

`python -m bench.state_families [RETAINED] [USERS]`: RETAINED jobs (default 5) of
USERS users (default 500,000) written into a fresh store, as ingest writes them (per
1,000-user command: its batch record, one index key a user, the job record, its
position and command keys, the partition's cursor and faust's offset key), with the
state's RocksDB options; then one more job. Prints, for that job, the bytes RocksDB's
compactions wrote and the CPU seconds of the process (writes and background work),
for each layout. RocksDB alone: no Kafka, no worker.
"""

from __future__ import annotations

import hashlib
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import rocksdict

from streams.aggregate.pipeline import STATE_FAMILIES
from streams.aggregate.state import (
    batch_key,
    command_key,
    cursor_key,
    job_key,
    message_index_key,
    position_key,
)
from streams.runtime.app import STATE_OPTIONS
from streams.runtime.patches.key_families import OFFSET_KEY
from streams.runtime.patches.table_readers import BoundedReadersOptions

COMMAND = 1_000
USER = b'{"to":{"user_id":"user-%d","email":"u%d@example.com"},"data":{"name":"x"}}'


class Layout:
    """A partition's store, its keys in one family or in the state's."""

    def __init__(self, path: Path, families: bool) -> None:
        options: Any = BoundedReadersOptions(**STATE_OPTIONS, use_rocksdict=True).as_options()
        options.create_missing_column_families(True)
        names = STATE_FAMILIES.names if families else ()
        self.db = rocksdict.Rdict(
            str(path), options=options, column_families={name: options for name in names}
        )
        self.handles = {name: self.db.get_column_family_handle(name) for name in names}
        self.families = families

    def put(self, batch: rocksdict.WriteBatch, key: bytes, value: bytes) -> None:
        family = STATE_FAMILIES.offsets if key == OFFSET_KEY else STATE_FAMILIES.of(key)
        batch.put(key, value, self.handles[family] if self.families and family else None)

    def ingest(self, job_id: str, users: int, offset: int) -> int:
        for first in range(0, users, COMMAND):
            batch = rocksdict.WriteBatch(raw_mode=True)
            record = b"".join(USER % (n, n) for n in range(first, first + COMMAND))
            self.put(batch, batch_key(job_id, offset), record)
            for n in range(first, first + COMMAND):
                digest = hashlib.blake2b(b"%s %d" % (job_id.encode(), n), digest_size=12)
                self.put(
                    batch, message_index_key(job_id, digest.hexdigest()), b"%d %d" % (n, offset)
                )
            self.put(batch, job_key(job_id), b"j" * 200)
            self.put(batch, position_key(job_id, first), b"%d" % offset)
            self.put(batch, command_key(job_id, f"c{offset}"), b"r" * 60)
            self.put(batch, cursor_key(0), b"%d" % offset)
            self.put(batch, OFFSET_KEY, b"%d" % offset)
            self.db.write(batch)
            offset += 1
        return offset

    def settle(self) -> None:
        busy = ("compaction-pending", "num-running-compactions", "num-running-flushes")
        while any(self.db.property_int_value(f"rocksdb.{name}") for name in busy):
            time.sleep(0.05)

    def compacted_gb(self) -> float:
        stats = self.db.property_value("rocksdb.stats") or ""
        line = next(line for line in stats.splitlines() if "Cumulative compaction" in line)
        return float(line.split(":")[1].split("GB")[0])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(families: bool, retained: int, users: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="state-families-") as root:
        layout = Layout(Path(root, "state-0.db"), families)
        offset = 0
        for n in range(retained):
            offset = layout.ingest(f"1-retained-{n:04d}", users, offset)
        layout.settle()
        written, cpu = layout.compacted_gb(), cpu_seconds()
        layout.ingest("1-measured", users, offset)
        layout.settle()
        result = layout.compacted_gb() - written, cpu_seconds() - cpu
        layout.db.close()
    return result


def main(retained: int, users: int) -> None:
    print(f"one more job of {users:,} users on a partition holding {retained} others:")
    for families, name in ((False, "one family (faust's)"), (True, "the state's families")):
        written, cpu = measure(families, retained, users)
        print(f"  {name}: compactions wrote {written:.2f} GB; {cpu:.2f} CPU-s")


if __name__ == "__main__":
    args = [int(arg) for arg in sys.argv[1:3]]
    main(*(args + [5, 500_000][len(args) :]))
