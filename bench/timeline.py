"""Probe: where a job's time goes, from record timestamps (one host, one clock).

`python -m bench.timeline [USERS] [JOBS]`: two workers in a namespace of their
own, JOBS jobs of USERS users (default 4 of 100,000) ingested, then run one after
the other, each on a settled machine. For each job, from its run command: the
run to COMPLETED as a client polling the view saw it; its pages as they were
handed over (bursts: the run's window, then each release); for each page past
the window, the time from the report that made room for it to the page; the time from
the last report to the COMPLETED event; and the rates of its first 90 % and last
10 % of sends (the tail, as `make bench` computes it).
"""

from __future__ import annotations

import sys
import time
from statistics import median
from typing import Any

from streams.kafka.producer import CommandProducer
from streams.kafka.topics import ensure_topics
from streams.testing.processes import start_workers, stop_all
from streams.testing.reader import ViewReader
from streams.testing.topics import read_stamped

from .env import TENANT, Run
from .fanout import tail_cut, tail_rates
from .jobs import create_job, ingest, ingest_commands, run_command
from .kafka import TopicStats
from .procs import settle

BURST_GAP_S = 0.005  # pages further apart than this start a new burst


def bursts(stamps: list[float]) -> list[tuple[float, int]]:
    """(start, pages) of each run of pages handed over together."""
    found: list[tuple[float, int]] = []
    last = None
    for stamp in stamps:
        if last is None or stamp - last > BURST_GAP_S:
            found.append((stamp, 0))
        found[-1] = (found[-1][0], found[-1][1] + 1)
        last = stamp
    return found


def room_delays(pages: list[tuple[float, int]], reports: list[float], window: int) -> list[float]:
    """For each page handed over after the run's window: the seconds from the report
    that made room for it (with W pages out at most, page p may go once p - W + 1
    reports are counted; the n-th produced is taken as the n-th counted) to the page."""
    delays = []
    for stamp, page in pages:
        made_room = page - window  # 0-based index of the report that made room
        if 0 <= made_room < len(reports):
            delays.append(stamp - reports[made_room])
    return delays


def describe(job_id: str, started: float, seen: float, records: dict[str, Any], window: int) -> str:
    def of_job(topic: str) -> list[float]:
        return [stamp for stamp, value in records[topic] if value.get("jobId") == job_id]

    def ms(seconds: float) -> str:
        return f"{(seconds - started) * 1000:.0f}"

    pages, reports, sends = of_job("pages"), of_job("progress"), of_job("sends")
    done = [
        stamp
        for stamp, value in records["events"]
        if value.get("jobId") == job_id and value.get("status") == "COMPLETED"
    ]
    handed = bursts(pages)
    numbered = [
        (stamp, value["page"]) for stamp, value in records["pages"] if value.get("jobId") == job_id
    ]
    delays = sorted(room_delays(numbered, reports, window))
    room = (
        f"median {median(delays) * 1000:.0f}, max {delays[-1] * 1000:.0f} ms ({len(delays)} pages)"
        if delays
        else "-"
    )
    cut = tail_cut(sends)
    head, tail = tail_rates(TopicStats(timestamps_ms=[round(stamp * 1000) for stamp in sends]))
    lines = [
        f"job {job_id}: run -> COMPLETED seen {ms(seen)} ms",
        "  pages handed over (ms, pages): "
        + ", ".join(f"({ms(at)}, {count})" for at, count in handed),
        f"  the report that made room for a page -> the page handed over: {room}",
        f"  last report {ms(reports[-1])} ms -> COMPLETED event "
        f"{', '.join(ms(stamp) for stamp in done) or '-'} ms",
        f"  sends: first {ms(sends[0])}, 90 % {ms(cut)}, last {ms(sends[-1])} ms; "
        f"{head:,.0f} / {tail:,.0f} sends/s, tail ratio {tail / head:.2f}",
    ]
    return "\n".join(lines)


def main(users: int, jobs: int) -> None:
    bench = Run.create()
    with bench.namespace("timeline") as s:
        ensure_topics(s)
        workers = start_workers(s, 2, bench.log_dir, "timeline")
        producer = CommandProducer(s, create_topics=False)
        views = ViewReader(s, TENANT)
        runs: list[tuple[str, float, float]] = []
        try:
            made = []
            for _ in range(jobs):
                job = create_job(producer, views)
                ingest(producer, views, ingest_commands(job.job_id, users))
                made.append(job.job_id)
            for job_id in made:
                settle()
                started = time.time()
                producer.send(run_command(job_id))
                producer.flush()
                views.wait_status(job_id, "COMPLETED", 120 + users / 1000, every=0.002)
                runs.append((job_id, started, time.time()))
        finally:
            stop_all(workers)
            views.close()
        records = {
            "pages": read_stamped(s, s.topic_fanout_pages),
            "progress": read_stamped(s, s.topic_progress),
            "sends": read_stamped(s, s.topic_sends),
            "events": read_stamped(s, s.topic_job_events),
        }
        for job_id, started, seen in runs:
            print(describe(job_id, started, seen, records, s.fanout_window_pages))
    bench.close()


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 100_000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 4,
    )
