"""Scenario 6, scale on paper: what a 100M-user job would need, from this run's measurements.

Computed, not measured: from the fan-out's sends per worker CPU-second (a
worker is one Python process, about one core), the per-job ingest rate, the
rate at which the job's aggregate emitted pages, the average send and page
sizes, the Redis bytes per user and the raw producer's MB/s on this broker.
"""

from __future__ import annotations

import base64
import math
import os
import time
from typing import Any

from streams.aggregate.state import JobState

from .jobs import MESSAGE
from .results import ScenarioResult

USERS = 100_000_000
HOUR = 3600.0


def record_round_trip(
    users: int = USERS, batch: int = 1000, page_size: int = 500
) -> tuple[float, int]:
    """Seconds to decode and re-encode the job record of a job of `users` users (the
    aggregate does it once per ingest command and once per page report), and its size.

    Measured here, in this process, on a record shaped like the real one at the end
    of its fan-out: counters and a bitmap of every page done (the users themselves sit
    under their batch keys, outside the record)."""
    pages = users // page_size
    job = JobState(
        tenant="bench",
        definition=MESSAGE,
        send=MESSAGE,
        data={"campaign": "bulkstream benchmark"},
        created_at=time.time(),
        create_command="c" * 32,
        applied_offset=10_000_000 + users // batch,
        received=users,
        page_size=page_size,
        pages_done=base64.b64encode(b"\xff" * (pages // 8)).decode(),
    )
    raw = job.to_bytes()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        JobState.from_bytes(raw).to_bytes()
        best = min(best, time.perf_counter() - started)
    return best, len(raw)


def _hours(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 2 * HOUR else f"{seconds / HOUR:.1f} h"


def compute(fan: dict[str, Any], ing: dict[str, Any] | None) -> ScenarioResult:
    """The paragraph (in `notes`) and its numbers (in `details`)."""
    result = ScenarioResult("scale", "Scale on paper: a 100M-user job")
    # A fan-out worker's sends per CPU-second (one Python process is about one core);
    # from the workers that did not also hold the job's aggregate when that is known.
    per_cpu = fan.get("fanout_sends_per_cpu_second") or fan["sends_per_cpu_second"]
    partitions = fan["partitions"]
    need_rate = USERS / HOUR
    workers = math.ceil(need_rate / per_cpu)
    send_b, page_b = fan["send_bytes_avg"], fan["page_bytes_per_user"]
    write_mb_s = need_rate * (send_b + page_b) / 1e6
    broker_mb_s = fan["ceiling_mb_s"]
    fan_cap = partitions * per_cpu
    emitted_after = fan.get("pages_emitted_after_s")
    emit_rate = fan["users"] / emitted_after if emitted_after else None
    bounds: dict[str, float] = {
        f"the send fan-out over today's {partitions} partitions": USERS / fan_cap,
        "the broker, at the MB/s one raw producer reached here": USERS
        * (send_b + page_b)
        / 1e6
        / broker_mb_s,
    }
    if emit_rate:
        bounds["the job's aggregate cutting it into pages (one partition, one worker)"] = (
            USERS / emit_rate
        )
    if ing is not None:
        bounds["ingesting it (one partition, one worker)"] = USERS / ing["rate"]
    # Measured by the fan-out scenario (same machine, same run), else here and now.
    record_s, record_bytes = fan.get("record_round_trip_100m") or record_round_trip(
        USERS, page_size=fan["page_size"]
    )
    commands, pages = USERS // 1000, USERS // fan["page_size"]
    # While it is ingested the record has no page bitmap yet: this is an upper bound.
    ingest_records_s = commands * record_s
    # The bitmap grows linearly during the fan-out (half its final size on average).
    progress_records_s = pages * record_s / 2
    bounds["the job's aggregate folding page reports into its record"] = progress_records_s
    if ing is not None:
        bounds["ingesting it (one partition, one worker)"] += ingest_records_s
    ordered = sorted(bounds.items(), key=lambda kv: -kv[1])
    first, first_s = ordered[0]
    redis_gb = USERS * fan.get("redis_bytes_per_user", 0) / 1e9
    state_gb = USERS * ing["command_bytes_per_user"] / 1e9 if ing else None
    text = (
        f"Fanning out {USERS:,} users in one hour takes {need_rate:,.0f} sends/s. "
        f"A worker's fan-out did {per_cpu:,.0f} sends per CPU-second here, so that is "
        f"{workers} fan-out worker{'s, a core each,' if workers > 1 else ' on one core'} and "
        f"at least as many partitions of the pages topic (a partition feeds one worker; today's "
        f"{partitions} cap one job's fan-out at about {fan_cap:,.0f} sends/s). The job record "
        f"(`streams.aggregate.state.JobState`, written whole) holds counters and a bitmap of "
        f"the pages done, not the users: at 100M users it is {record_bytes / 1e3:,.0f} kB, and one "
        f"decode and re-encode of it took {record_s * 1000:,.2f} ms here; the aggregate does "
        f"that once per ingest command ({commands:,}: at most {_hours(ingest_records_s)} in "
        f"all) and once per page report ({pages:,}: {_hours(progress_records_s)}), and writes "
        f"it to the state changelog each time "
        f"({(commands + pages / 2) * record_bytes / 1e9:,.1f} GB). The broker then takes "
        f"{write_mb_s:,.0f} MB/s of writes (sends of {send_b:.0f} B plus pages at "
        f"{page_b:.0f} B a user, times the replication factor), against {broker_mb_s:,.0f} "
        f"MB/s that one raw producer reached on this broker. But what bounds a 100M job "
        f"first is {first}: {_hours(first_s)}"
    )
    others = "; ".join(f"{name}: {_hours(s)}" for name, s in ordered[1:])
    text += f" (then {others})." if others else "."
    if ing is not None and emit_rate:
        text += (
            f" A job's commands, state and pages come from one partition, so ingest "
            f"({ing['rate']:,.0f} users/s here) and page emission ({emit_rate:,.0f} users/s) "
            f"do not grow with workers or partitions; only the send fan-out does."
        )
    if state_gb is not None:
        text += (
            f" The job's state would be about {state_gb:,.0f} GB on that one worker (RocksDB, "
            f"and as much in its changelog partition), and its Redis views about "
            f"{redis_gb:,.0f} GB."
        )
    text += f" (Measured on {os.cpu_count()} shared cores with the broker on the same host.)"
    result.notes.append(text)
    result.notes.append(
        "What would lift the one-partition bound (a design, not built): shard one job's "
        "ingest and page emission by user. The API and producers key an ingest command "
        "by `<job>/<shard>`, the shard a hash of each user's identity (a large body split by "
        "it), so a duplicate always lands on the shard that holds its first copy and "
        "dedupe stays local. Each shard's owner keeps its users, positions and dedupe index "
        "and counts what it accepted; the job's owner keeps the definition and the "
        "lifecycle, learns the shards' counts from their reports on `bulk.progress` (the "
        "same exact, replay-safe fold as page reports: absolute counts per shard, a "
        "higher one wins), and on the run tells every shard to cut and hand over its own "
        "pages. Ingest and page emission then grow with the shards (S shards on S "
        "partitions: S workers' cores), the job record stays small (counts per shard), and "
        "what a client sees is unchanged but for the users page, whose order becomes "
        "shard by shard, each in ingestion order (Courier does not promise an order). "
        "With S = 32 and the per-worker ingest rate measured here, a 100M-user job's "
        "ingest would take "
        + (_hours(USERS / (32 * ing["rate"])) if ing is not None else "a 32nd of the above")
        + "."
    )
    result.details = {
        "users": USERS,
        "sends_per_s_for_1h": need_rate,
        "fanout_sends_per_cpu_second": per_cpu,
        "workers_for_1h": workers,
        "partitions_for_1h": max(workers, partitions),
        "broker_write_mb_s_for_1h": write_mb_s,
        "broker_raw_mb_s_measured": broker_mb_s,
        "bounds_seconds": dict(ordered),
        "first_bound": first,
        "record_bytes_100m": record_bytes,
        "record_round_trip_s_100m": record_s,
        "state_gb": state_gb,
        "redis_gb": redis_gb,
    }
    return result
