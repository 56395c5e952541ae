"""Scenario 4, the HTTP API: ingest through `POST /bulk/{id}`, and `GET /bulk/{id}` latency
while a large job fans out.

A real `bulkstream api` beside the workers. Ingest: N users in 1,000-user
requests (bodies built before the clock starts) from CLIENTS concurrent
httpx clients, timed from the first request to the last answer (each answer
is the aggregate's own result). Then `GET /bulk/{id}` is requested at RATE
a second on an open-loop schedule: first for IDLE_WINDOW seconds with nothing
running (the baseline), then for WINDOW seconds from the job's run command;
latencies of the answers that still said PROCESSING are the figure (the
fan-out ran while they were served).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.processes import (
    ApiProcess,
    cpu_seconds,
    start_workers,
    stop_all,
    wait_ready,
)
from streams.testing.reader import ViewReader
from streams.testing.users import BATCH, generated_users

from .env import TENANT, Options, Run, say
from .jobs import MESSAGE
from .latency import LoadResult, open_loop, percentile
from .procs import (
    busy_fraction,
    get_job_view_answers,
    get_latency_buckets,
    log_findings,
    machine_busy,
)
from .results import Figure, ScenarioResult, check

CLIENTS = 4
RATE = 500.0
WINDOW = 20.0
IDLE_WINDOW = 10.0
WORKER_NICENESS = 10


def run(bench: Run, opts: Options) -> ScenarioResult:
    result = ScenarioResult("http", "HTTP API: ingest, and GET latency during a fan-out")
    with bench.namespace("http") as settings:
        _measure(bench, settings, opts, result)
    return result


async def _ingest(api: ApiProcess, users: int) -> tuple[str, float]:
    headers = {"Authorization": f"Bearer {api.keys[TENANT]}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=api.url, headers=headers, timeout=120, limits=limits
    ) as http:
        created = await http.post("/bulk", content=orjson.dumps({"message": MESSAGE}))
        if created.status_code != 200:
            raise AssertionError(f"create: {created.status_code} {created.text}")
        job_id: str = created.json()["jobId"]
        bodies = [
            (min(BATCH, users - start), orjson.dumps({"users": generated_users(start, BATCH)}))
            for start in range(0, users, BATCH)
        ]
        queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def client() -> None:
            while not queue.empty():
                count, body = queue.get_nowait()
                answer = await http.post(f"/bulk/{job_id}", content=body)
                if answer.status_code != 200 or answer.json().get("total") != count:
                    raise AssertionError(f"ingest: {answer.status_code} {answer.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        return job_id, time.perf_counter() - started


async def _run(api: ApiProcess, job_id: str) -> None:
    headers = {"Authorization": f"Bearer {api.keys[TENANT]}"}
    async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=60) as http:
        ran = await http.post(f"/bulk/{job_id}/run")
        if ran.status_code != 202:
            raise AssertionError(f"run: {ran.status_code} {ran.text}")


def _window(
    api: ApiProcess, job_id: str, seconds: float, run_first: bool
) -> tuple[LoadResult, dict[str, Any]]:
    """GET the job at RATE for `seconds` (after the run command when `run_first`);
    the answers, and the API's own view of them (histogram, CPU share, machine busy)."""

    async def go() -> LoadResult:
        if run_first:
            await _run(api, job_id)
        key = api.keys[TENANT]
        return await open_loop("127.0.0.1", api.port, f"/bulk/{job_id}", key, RATE, seconds)

    before = get_latency_buckets(api)
    answers = get_job_view_answers(api)
    cpu, busy = cpu_seconds(api.pid), machine_busy()
    started = time.perf_counter()
    load = asyncio.run(go())
    elapsed = time.perf_counter() - started
    after = get_job_view_answers(api)
    copies, reads = (after.get(k, 0.0) - answers.get(k, 0.0) for k in ("copy", "redis"))
    return load, _server_side(before, get_latency_buckets(api)) | {
        "answered_from_copy": copies / max(copies + reads, 1.0),
        "api_cpu_share": (cpu_seconds(api.pid) - cpu) / elapsed,
        "api_cpu_ms_per_request": (cpu_seconds(api.pid) - cpu) * 1000 / len(load.samples),
        "machine_busy": busy_fraction(busy, machine_busy()),
    }


def _save(path: Path, load: LoadResult) -> None:
    with path.open("w") as out:
        out.write("at_s,latency_ms,code,job_status\n")
        for x in load.samples:
            out.write(f"{x.at:.4f},{x.latency_ms:.3f},{x.code},{x.job_status}\n")


def _measure(bench: Run, s: Settings, opts: Options, result: ScenarioResult) -> None:
    n = opts.users
    if n % BATCH:
        raise ValueError(f"--users must be a multiple of {BATCH} for the HTTP scenario")
    ensure_topics(s)
    say(f"http: starting {opts.workers} workers and the API")
    # Workers at the niceness the README documents for a host shared with the API.
    niced = s.model_copy(update={"worker_niceness": WORKER_NICENESS})
    workers = start_workers(niced, opts.workers, bench.log_dir, "http")
    api = ApiProcess(s, bench.log_dir, keys={TENANT: secrets.token_urlsafe(24)})
    views = ViewReader(s, TENANT)
    try:
        api.start()
        wait_ready([api], timeout=60)
        say(f"http: ingesting {n:,} users from {CLIENTS} clients (timed)")
        job_id, seconds = asyncio.run(_ingest(api, n))
        job = views.job(job_id)
        check(job is not None and job.received == n, f"view: received = {n:,}", result)
        say(f"http: GET /bulk/{{id}} at {RATE:.0f}/s for {IDLE_WINDOW:.0f} s, nothing running")
        idle, idle_server = _window(api, job_id, IDLE_WINDOW, run_first=False)
        say(f"http: run, and GET /bulk/{{id}} at {RATE:.0f}/s for {WINDOW:.0f} s")
        started = time.perf_counter()
        load, server = _window(api, job_id, WINDOW, run_first=True)
        _save(bench.log_dir / "http-latency.csv", load)
        job = views.wait_status(job_id, "COMPLETED", max(900.0, n / 500), every=0.02)
        fanout_seconds = time.perf_counter() - started
        counts = (job.received, job.enqueued, job.failures)
        check(counts == (n, n, 0), "the job ran to COMPLETED with every user enqueued", result)
    finally:
        api.stop()
        stop_all(workers)
        views.close()
    result.log_findings = log_findings([api.log_path, *(w.log_path for w in workers)])
    errors = [x for x in [*idle.samples, *load.samples] if x.code != 200]
    check(not errors, f"every GET answered 200 ({len(load.samples) + len(idle.samples):,})", result)
    during = [x.latency_ms for x in load.samples if x.job_status == "PROCESSING"]
    quiet = [x.latency_ms for x in idle.samples]
    completed = [x.at for x in load.samples if x.job_status == "COMPLETED"]
    if completed:  # the first answer that said COMPLETED: when the fan-out ended
        fanout_seconds = min(completed)
    if len(during) < 0.5 * len(load.samples):
        result.notes.append(
            f"the fan-out ended about {fanout_seconds:.1f} s after the run: only "
            f"{len(during):,} of {len(load.samples):,} GETs were answered while it ran"
        )
    idle_label = f"same load, {IDLE_WINDOW:.0f} s with nothing running"
    result.notes.append(
        f"The API used {server.get('api_cpu_ms_per_request', float('nan')):.2f} ms of CPU per "
        f"GET ({server.get('api_cpu_share', float('nan')):.0%} of a core at {RATE:.0f}/s); the "
        f"machine's cores were {server.get('machine_busy', float('nan')):.0%} busy during the "
        f"fan-out window, {idle_server.get('machine_busy', float('nan')):.0%} in the idle one; "
        f"the API's own histogram put {server.get('server_within_5ms', float('nan')):.0%} of "
        f"the fan-out window's GETs under 5 ms: the rest of a slow GET's latency is spent "
        f"outside the handler (queued in the API's event loop, or waiting for a core)."
    )
    result.figures += [
        Figure(label=f"ingest via HTTP, {CLIENTS} clients", measured=n / seconds, unit="users/s"),
        Figure(
            label="GET /bulk/{id} p50 during fan-out",
            measured=percentile(during, 50),
            unit="ms",
            baseline=percentile(quiet, 50),
            baseline_label=idle_label,
        ),
        Figure(
            label=f"GET /bulk/{{id}} p99 during fan-out, {RATE:.0f} req/s open loop",
            measured=percentile(during, 99),
            unit="ms",
            baseline=percentile(quiet, 99),
            baseline_label=idle_label,
            target_max=5.0,
            target_on="measured",
        ),
        Figure(
            label="API CPU per GET /bulk/{id} during fan-out",
            measured=server.get("api_cpu_ms_per_request", float("nan")),
            unit="ms",
            baseline=idle_server.get("api_cpu_ms_per_request"),
            baseline_label=idle_label,
            target_max=0.2,
            target_on="measured",
        ),
    ]
    result.details = {
        "users": n,
        "ingest_seconds": seconds,
        "ingest_rate": n / seconds,
        "clients": CLIENTS,
        "worker_niceness": WORKER_NICENESS,
        "rate": RATE,
        "window_s": WINDOW,
        "run_to_completed_s": fanout_seconds,
        "during": _latency(during, load, server, len(load.samples)),
        "idle": _latency(quiet, idle, idle_server, len(idle.samples)),
    }


def _server_side(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """The API's own view of the window's GETs, from its latency histogram."""
    delta = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = delta.get(float("inf"), 0.0)
    if not total:
        return {}
    p99 = next(bound for bound, count in delta.items() if count >= 0.99 * total)
    return {
        "server_within_5ms": delta.get(0.005, 0.0) / total,
        "server_p99_bucket_ms": p99 * 1000,
    }


def _latency(
    values: list[float], load: LoadResult, server: dict[str, Any], requests: int
) -> dict[str, Any]:
    return {
        "requests": requests,
        "counted": len(values),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "p999_ms": percentile(values, 99.9),
        "max_ms": max(values, default=float("nan")),
        "client_late_p99_ms": percentile(load.late_ms, 99),
        **server,
    }
