"""CPU µs per send of the fan-out's page expansion, pure Python against native, alone and
with librdkafka's produce after it (to a broker that is never reached: the sends stay
in the local queue, purged after each page).

    .venv/bin/python native/bench_expand.py [--pages 400] [--users 500]

The page is the benchmark's (bench/jobs.py): generated users and the bench message,
its data as the job's global data.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import orjson
from confluent_kafka import Producer

from schemas.fanout import PageFields, encode_page_spliced
from streams.fanout.expand import NATIVE_AVAILABLE, Expansion, expand_native, expand_pure
from streams.testing.users import generated_users

MESSAGE = {"event": "bench-welcome", "routing": {"method": "single", "channels": ["email"]}}
GLOBAL_DATA = {"campaign": "bulkstream benchmark", "sender": "Acme"}


def page(users: int) -> bytes:
    entries = orjson.dumps(
        [[i, f"user:user-{i}", user] for i, user in enumerate(generated_users(0, users))]
    )
    fields = PageFields(
        job_id="1-69248100-735a1efde685854f21970d8e",
        tenant="bench",
        page=0,
        page_size=users,
        created_at=1_764_000_000.5,
        message=MESSAGE,
        data=GLOBAL_DATA,
        message_ids="position",
        users=[],
    )
    return encode_page_spliced(fields, entries)


def measure(expand: Callable[[bytes], Expansion], raw: bytes, pages: int, produce: bool) -> float:
    producer = Producer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_000_000,
            "linger.ms": 100_000,
            "log_level": 0,
        }
    )
    sends = 0
    started = time.process_time()
    for _ in range(pages):
        expansion = expand(raw)
        sends += len(expansion.sends)
        if produce:
            for key, value in expansion.sends:
                producer.produce("bulk.sends", value, key)
            producer.purge(in_queue=True)
    return (time.process_time() - started) / sends * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--users", type=int, default=500)
    args = parser.parse_args()
    raw = page(args.users)
    ways = [("pure", expand_pure)] + ([("native", expand_native)] if NATIVE_AVAILABLE else [])
    print(f"page: {args.users} users, {len(raw)} bytes; {args.pages} pages a run")
    for produce in (False, True):
        for name, expand in ways:
            measure(expand, raw, max(args.pages // 10, 1), produce)  # warm up
            best = min(measure(expand, raw, args.pages, produce) for _ in range(3))
            what = "expand + produce" if produce else "expand"
            print(f"{name:>6} {what:<16} {best:6.2f} µs/send  {1e6 / best:>9,.0f} sends/CPU-s")


if __name__ == "__main__":
    main()
