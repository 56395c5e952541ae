"""Probe: how long a fan-out worker takes to read a partition's done-markers from the
start (what a partition changing hands waits for, when its new owner never held it).

`python -m bench.done_restore [N]`: N markers (default 1,000,000) produced to a
one-partition topic of their own on the local broker, then restored into a fresh
local store by `streams.fanout.done.DoneRestore`; prints wall and CPU seconds.
The topic is deleted afterwards.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from streams.fanout.done import DoneRestore, DoneStore
from streams.settings import Settings

from .kafka import create_topic

PAGES_PER_JOB = 2_000


def main(markers: int) -> None:
    tag = uuid.uuid4().hex[:8]
    s = Settings().model_copy(
        update={"topic_fanout_done": f"probe-{tag}.done", "app_id": f"probe-{tag}"}
    )
    create_topic(s, s.topic_fanout_done, 1, {"cleanup.policy": "compact,delete"})
    try:
        producer = Producer(
            {
                "bootstrap.servers": s.kafka_bootstrap_servers,
                "linger.ms": 20,
                "compression.type": "lz4",
            }
        )
        for i in range(markers):
            key = f"job-{i // PAGES_PER_JOB:08d}:{i % PAGES_PER_JOB}".encode()
            producer.produce(s.topic_fanout_done, key=key, value=b"1", partition=0)
            if i % 50_000 == 0:
                producer.flush()
        producer.flush()
        with tempfile.TemporaryDirectory() as folder:
            store = DoneStore(Path(folder) / "done")
            restore = DoneRestore(s, store)
            wall, cpu = time.perf_counter(), time.process_time()
            restore.restore([0])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            restore.close()
            store.close()
        print(f"{markers:,} markers restored from the start: {wall:.2f} s, {cpu:.2f} CPU-s")
    finally:
        AdminClient({"bootstrap.servers": s.kafka_bootstrap_servers}).delete_topics(
            [s.topic_fanout_done]
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
