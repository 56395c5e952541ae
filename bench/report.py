"""Writes docs/benchmarks.md from a run's results: the whole file, every time."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from . import findings as explain
from .results import Figure, ScenarioResult

_INTRO = """\
Written by `python -m bench` (the benchmark suite of issue #5); do not edit by hand, run it
again. Every scenario runs against the local stack (`make up`: one Kafka broker, one Redis)
with real `bulkstream worker` processes, in topics, consumer groups and a Redis prefix of its
own, and each figure is compared with a baseline measured **in the same run, on the same
broker**: the machine is small and shared, so absolute numbers move from run to run; the
ratios much less. Each scenario starts once the machine has settled (its cores less than 25 %
busy over a second, at most 90 s of waiting): the last one's broker, Redis and disk work is
not timed in the next.
"""

_REPRODUCE = """\
```sh
make bench                                   # N = 1,000,000 users, 2 workers (several minutes)
make bench BENCH_ARGS="--users 200000"       # the same, smaller and faster
make bench BENCH_ARGS="--only fanout --profile"   # one scenario, with py-spy (*)
```

(*) A run of some scenarios (`--only`) writes its report beside its logs, in
`.local/bench/<run id>/benchmarks.md`, not over this file; `--out` says where else.

`python -m bench --help` lists the options (`--users`, `--workers`, `--only`, `--profile`,
`--out`, `--keep`). Process logs, py-spy's raw stacks and the run's `results.json` stay in
`.local/bench/<run id>/`; `python -m bench --render .local/bench/<run id>/results.json`
rewrites this file from them without measuring again. `python -m bench.timeline [USERS]
[JOBS]` (untimed by `make bench`) prints where each of a few jobs' time went, from record
timestamps: its pages as they were handed over, the report that made room for each page to
the page, its last report to `COMPLETED`, its head and tail rates.
"""

_SCENARIOS = {
    "fanout": "From the run command to `COMPLETED` (reached only once every page's sends are "
    "committed); then the job's counters must be N and a read_committed reader must find N "
    "sends with N distinct messageIds. Baseline: one bare confluent-kafka producer "
    "(`streams.kafka.config.producer_config`: same acks, idempotence, linger, batch size) "
    "pushing the same N send events, built with `streams.sends.build_send` and "
    "serialised before the clock starts, to a fresh topic with the same partitions, three "
    "times (the ceiling is the median: one push's rate moved by 2x between runs of the "
    "same code). Then three jobs of N/10 users, one after the other, each against its own "
    "ceiling; such a job takes about a second, so the N/10 figures are the medians of the "
    "three (rates, ceilings, and the tail of the job whose tail ratio is the median). The "
    "tail: from the sends' record timestamps, the rate of a job's last 10 % of sends "
    "against its first 90 %.",
    "naive": "`bench/naive.py`: the fan-out one writes first, one faust agent that keeps the "
    "job's users in memory and, on the run command, does `await sends_topic.send(...)` once "
    "per recipient. Its own process, same commands, same send events; timed from the run "
    "command to the broker's acknowledgement of the last send, then read back (N distinct "
    "messageIds). The figure is bulkstream's fan-out rate over its rate.",
    "ingest": "N users in 1,000-user ingest commands (`CommandProducer`), timed from the first "
    "send to the last command's result (in Redis); every result checked, and `received` = N. "
    "A job's commands are keyed by its id, so one partition, one worker applies them: the "
    "target is on that worker's users per CPU-second. Baseline: `bench/naive_ingest.py`, the "
    "ingest one writes first, one faust agent that decodes each command with the same schema "
    "and, per user, checks `key in table` and writes `table[f'{job}:{identity}'] = user` "
    "(memory store, a changelog record per user), then the job's count (table and Redis); "
    "its own process and topics, the same commands (built before either clock), timed from "
    "the first command sent to the last one applied, with its CPU. The raw producer pushing "
    "the same commands is no longer measured (issue #21): it timed bytes going into one "
    "partition, not users being accepted, so a ratio to it told nothing.",
    "http": "A real `bulkstream api` beside the workers, which run at the niceness the README "
    "documents for a host shared with the API (`BULKSTREAM_WORKER_NICENESS=10`). Ingest: "
    "1,000-user `POST /bulk/{id}` "
    "bodies (built beforehand) from concurrent httpx clients, from the first request to the "
    "last answer. Then the job is run and `GET /bulk/{id}` is requested at a fixed rate on an "
    "open-loop schedule over 8 keep-alive connections; the latency of each answer that still "
    "said `PROCESSING` (served while the fan-out ran) counts, from its dispatch (including "
    "any wait for a free connection) to its last byte.",
    "memory": "Fresh workers and a fresh namespace per size; a job of N/10 users, then one of N, "
    "each ingested and run to `COMPLETED`; each worker's `VmHWM` read before it stops. Ratio: "
    "the largest worker's peak for N over the same for N/10 (with `--memory-users M`: the "
    "peak for M over the peak for N). What grew with the job was the owner's RocksDB: the "
    "readers of its files held their index and filter blocks (in a probe of RocksDB alone "
    "with the state's options, a dedupe key, a message-id key and a share of a batch record "
    "per user: 63 MiB at 1M users, 91 MiB at 10M), and a compaction's transient memory "
    "follows the size of the files it writes (the state writes files of 8 MiB, not faust's "
    "64: 82 against 115 MiB at 10M users). Now the index and filter of each file are cut in "
    "4 KiB partitions that live in the block cache, only their top levels pinned "
    "(`streams/runtime/patches/table_readers.py`), with 10 bits a key in the filter instead "
    "of faust's 3: the probe peaked at 57 MiB at 1M and 71 MiB at 10M, and a dedupe miss or "
    "a message-index hit cost within 10 % of what they did there (a filter kept whole in the "
    "cache made each dedupe lookup 2 to 4 times as costly). What it costs ingest: in a "
    "probe of RocksDB alone writing what ingest writes (one index key a user after a "
    "multi-get, and a batch record a command), 10.3 and 11.3 microseconds of CPU a user "
    "with these options against 7.9 and 9.3 with faust's (two alternating pairs, "
    "2026-12-02): about 2 microseconds a user, the price of a peak that does not follow "
    "the job. The first 10M run (`--memory-users 10000000`, 2026-12-06) found one more: the "
    "owner peaked at 388 MiB against 200 at 1M (1.94) at the job's completion, when the "
    "expiry of its views went as one EXPIRE a key in one pipeline (three keys a bucket "
    "of 100 users: 300,000 commands at 10M, which took 180 MB in redis-py). They go "
    "10,000 a round trip now (`streams.views.connection.expire_each`). A 10M run takes "
    "about 3 to 4.5 minutes here, its 1M job half a minute (`seconds_per_size`).",
    "outcomes": "One job of N users over W workers, fanned out and timed from the run "
    "command to `COMPLETED` (the baseline: the fan-out rate of the same job, its users "
    "ingested beforehand). Then N delivery reports (SENT, one per message, ids computed "
    "from the ingest commands beforehand) are queued on `bulk.delivery-status` with the "
    "workers stopped (SIGSTOP), all keyed by the job's id, so one partition and one worker "
    "fold them; timed from the workers' SIGCONT to the job view counting N messages SENT. "
    "So, like the fan-out, the fold starts from its whole input and shares the machine "
    "with nothing of the benchmark's. A second round (DELIVERED) is timed the same way: "
    "a message's later states rewrite its stored state, where SENT writes it first. "
    "Checked: one message event per message and state. With `--profile`, a third round "
    "(OPENED) is folded afterwards under py-spy, untimed. The goal (issue #18): a fold at "
    "least as fast as the fan-out, so outcomes never lag the sends.",
    "latency": "W workers and a `bulkstream api`; the first job is created as soon as every "
    "process answers `/readyz` (readiness has to mean the fan-out holds its partitions). Then "
    "40 jobs of 10 users, one after another: create, ingest, run, and `GET /bulk/{id}` every "
    "2 ms until `COMPLETED`. Run to COMPLETED is from the run request to the first GET that "
    "says so. The stages are medians over the jobs, from record timestamps on the job's "
    "topics (one host, one clock) and a read_committed watcher of `bulk.progress`.",
    "rebalance": "W workers and the API; 2 clients run 10-user jobs back to back the whole "
    "time while a fan-out-only worker (`--stage fanout`, as an autoscaled deployment runs "
    "it) joins, leaves (SIGTERM), joins again, and is restarted under its id (a rolling "
    "deploy), 8 s apart. A change's jobs are those running at any moment from the change to "
    "2 s after every partition is held again; a job's delay is its run-to-COMPLETED time "
    "minus the median of the steady windows' jobs, and the figure is the p99 of the delays. "
    "The sequence runs once per configuration of the fan-out group; the table has the "
    "default's (range, eager), the numbers every configuration's. A large job runs beside "
    "them, paced, and each of its pages is timed from the pages topic to its progress "
    "report: a change's figure is the longest of its pages in flight during the change.",
}


def _num(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "ms":
        return f"{value:,.0f} ms" if value >= 100 else f"{value:.2f} ms"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{text} {unit}".strip()


def _row(scenario: str, figure: Figure) -> str:
    verdict = {True: "pass", False: "**FAIL**", None: ""}[figure.passed]
    baseline = (
        f"{_num(figure.baseline, figure.unit)} ({figure.baseline_label})"
        if figure.baseline is not None
        else ""
    )
    ratio = "" if figure.ratio is None else f"{figure.ratio:.2f}"
    if figure.ratio is not None and figure.ratio < 0.1:
        ratio = f"{figure.ratio:.2g}"
    measured = _num(figure.measured, figure.unit)
    cells = [scenario, figure.label, measured, baseline, ratio, figure.target, verdict]
    return "| " + " | ".join(cells) + " |"


def _details(details: dict[str, Any]) -> str:
    parts = []
    for key, value in details.items():
        # Shown in sections of their own (the profile, bench/findings.py).
        if key in ("profile", "stages_ms", "configurations"):
            continue
        if isinstance(value, float):
            value = f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        elif isinstance(value, dict):
            inner = ", ".join(
                f"{k}: {v:,.1f}" if isinstance(v, float) else f"{k}: {v}" for k, v in value.items()
            )
            value = "{" + inner + "}"
        parts.append(f"`{key}` {value}")
    return "; ".join(parts)


# What each profiled scenario's section says it profiled.
_PROFILED = {
    "fanout": "every worker while a second job of the same size fanned out",
    "outcomes": "every worker while a third round of reports (OPENED, one per message) "
    "was folded after the timed ones (untimed)",
    "ingest": "every worker while a second job of the same size was ingested (untimed)",
}


def _ingest_profile(profile: dict[str, Any] | None) -> str:
    """What the ingest's profile says, in a sentence (empty without `--profile`)."""
    if not profile:
        return "(`--profile` says where its CPU goes.) "
    threads = profile.get("thread_cpu_seconds", {})
    total = sum(threads.values()) or 1.0
    rocks = sum(seconds for name, seconds in threads.items() if name.startswith("rocksdb"))
    top = ", ".join(f"`{name.split(' (')[0]}` {share:.0f} %" for name, share in profile["top"][:6])
    return (
        f"Profiled (below, a second job ingested under py-spy): RocksDB's background "
        f"threads used {100 * rocks / total:.0f} % of the owner's CPU; the largest self "
        f"times of its samples: {top}. "
    )


def _profile(results: list[ScenarioResult]) -> list[str]:
    lines = ["## Where the time goes", ""]
    profiled = [(r.name, r.details["profile"]) for r in results if r.details.get("profile")]
    if not profiled:
        return [*lines, "Not profiled in this run (`--profile` adds it).", ""]
    for name, profile in profiled:
        lines += [f"### {name}", "", *_one_profile(name, profile)]
    return lines


def _one_profile(name: str, profile: dict[str, Any]) -> list[str]:
    threads = profile["threads"]
    total = sum(threads.values()) or 1
    split = ", ".join(f"{thread} {100 * n / total:.0f} %" for thread, n in threads.items())
    lines = [
        f"py-spy (`record --format raw --threads --nonblocking`, {profile['rate_hz']} Hz) on "
        f"{_PROFILED.get(name, 'every worker')} ({profile['seconds']:.1f} s); "
        f"{profile['samples']:,} non-idle samples, by thread: {split} (`MainThread` runs "
        "the faust agents and the feeds, `fanout` the transactional fan-out loop, `webhooks` "
        "the webhook dispatcher, `*-fetch_0` the feeds' takes, `delivery-fold_0` the native "
        "delivery fold, `*-poll` librdkafka's delivery callbacks). Collapsed stacks "
        "folded by their leaf function: self time, as a share of the non-idle samples. A C "
        "call (librdkafka's produce, orjson, RocksDB) counts in the Python function that "
        "made it; py-spy's idle filter is approximate, so part of an event loop's `select` "
        "shows.",
        "",
        "By part of the product (every sample of a stack that passes through it): "
        + ", ".join(
            f"{stage} {100 * n / (profile['samples'] or 1):.0f} %"
            for stage, n in profile.get("stages", {}).items()
        )
        + ".",
        "",
        "| # | function (file) | self % |",
        "|---|---|---|",
    ]
    for i, (function, share) in enumerate(profile["top"], 1):
        lines.append(f"| {i} | `{function}` | {share:.1f} |")
    threads_cpu = profile.get("thread_cpu_seconds")
    if threads_cpu:
        busiest = sum(threads_cpu.values()) or 1
        lines += [
            "",
            "CPU of the busiest worker's threads meanwhile (from `/proc`, by thread name; "
            "RocksDB's background threads are `rocksdb:*`, librdkafka's `rdk:*`): "
            + ", ".join(
                f"{thread} {seconds:.1f} s ({100 * seconds / busiest:.0f} %)"
                for thread, seconds in threads_cpu.items()
            )
            + ".",
        ]
    return [*lines, ""]


def _why(results: list[ScenarioResult], facts: dict[str, str]) -> list[str]:
    """For each failed target, what this run's own numbers say it would take."""
    by_name = {r.name: r for r in results}
    failed = {r.name for r in results for f in r.figures if f.passed is False}
    cores = facts.get("cores", "?")
    lines = ["## Why a target fails here", ""]
    fan = by_name.get("fanout")
    if fan is not None and "fanout" in failed:
        d = fan.details
        missed = [f.label for f in fan.figures if f.passed is False]
        cpu, sends = d.get("worker_cpu", {}), d.get("worker_sends", {})
        per_worker = "; ".join(
            f"{w} {cpu[w]:.1f} CPU-s for {sends.get(w) or 0:,.0f} sends" for w in sorted(cpu)
        )
        emitted = d.get("pages_emitted_after_s")
        phases = d.get("loop_seconds") or {}
        loops = "; ".join(
            f"{w} " + ", ".join(f"{p} {s:.1f} s" for p, s in sorted(phases[w].items()))
            for w in sorted(phases)
            if phases[w]
        )
        lines.append(
            f"- **Fan-out** ({'; '.join(missed)}). The fan-out loop's own thread did "
            f"{d.get('loop_sends_per_cpu_second', float('nan')):,.0f} sends per CPU-second; "
            f"the workers, whole: {per_worker}. The one that holds the job's partition also "
            f"cuts every page of the job (its aggregate reads the users from RocksDB, encodes "
            f"the pages and hands them to librdkafka) and folds every page's report. "
            f"Pages go out as reports make room in the job's window "
            f"(BULKSTREAM_FANOUT_WINDOW_PAGES), so the last one is handed over near the end "
            f"of any run ("
            + (f"{emitted:.1f} s into the {d['seconds']:.1f} s run" if emitted else "late")
            + f"), whatever holds it. The machine was "
            f"{d['machine_busy']:.0%} busy, its {cores} cores shared with the broker: CPU "
            f"taken anywhere, the broker's included, holds the fan-out. "
            + (
                f"Each fan-out loop's wall time, by what it did (waiting: no page fetched; "
                f"committing: its offsets and the transaction): {loops}. "
                if loops
                else ""
            )
            + "What would move it: "
            "a shorter round trip from the report that makes room in a job's window to the "
            "pages that fill it (the report's transaction, up to 16 pages of sends before "
            "its commit makes it visible; the progress feed, which releases once a quarter "
            "of the window is free; the job record's changelog write; then the pages): "
            "a median of 70 to 139 ms a page in 100,000-user jobs (`python -m "
            "bench.timeline`, 2026-12-07; 134 to 194 ms when the release went round "
            "bulk.control), and the same from a job's last report to COMPLETED (44 to 143 "
            "ms there, median 58, most of it its transaction's commit); less CPU per page "
            "on the owner; or pages cut over several partitions (the sharded ingest of the "
            "scale section)."
        )
    out = by_name.get("outcomes")
    if out is not None and "outcomes" in failed:
        d, n = out.details, out.details.get("users", 0)
        rounds = {k: v for k, v in d.items() if isinstance(v, dict) and "fold_rate" in v}
        slowest = min(rounds, key=lambda status: rounds[status]["fold_rate"])
        r = rounds[slowest]
        cpu = r.get("fold_worker_cpu_seconds") or float("nan")
        lines.append(
            f"- **Delivery fold.** {slowest} reports: {r['fold_rate']:,.0f} reports/s "
            f"against the fan-out's {d['fanout_rate']:,.0f} sends/s. A job's reports share "
            f"its partition (key = job id, so each meets its job's state), so one worker's "
            f"event loop folds them all, while the fan-out spreads over every worker; the "
            f"folding worker used {cpu:.1f} CPU-s ({1e6 * cpu / max(n, 1):.0f} microseconds "
            f"a report, {r.get('reports_per_cpu_second', float('nan')):,.0f} reports per "
            f"CPU-second). "
            "A feed's batch is read, its messages found (each id carries its position: a "
            "digest checked, no read of the job's index) and folded into the stored blocks "
            "of message states natively, with no Python object a report "
            "(`bulkstream_native.ReportBatch`: about 1 microsecond a report, "
            "`native/bench_fold.py`), and the Redis views take one entry a message (no "
            "index field: the ids carry their positions), as plain HSET commands the "
            "native fold writes in the Redis protocol, then one script call for the "
            "counts. A batch's end (its events acknowledged while its views are "
            "written, then the state) runs while the next batch is fetched and folded; "
            "the fold's `waiting` step is the time the next batch waited for it (the end's "
            "work shares the event loop and the 2 cores with the next fold). A "
            "DELIVERED round costs more than a SENT one: each message's stored state "
            "holds two states, read, rewritten and sent to the changelog whole. "
            "What remains is each report's value made a Python bytes object by the "
            "feed's reader (librdkafka's, in the native module) and read again by the "
            "native fold, a message event a report queued on librdkafka (by the native "
            "fold, on its own thread; the webhook dispatcher reads it again, and "
            "decodes it only if some endpoint exists, none in this run), the blocks of "
            "message states written through faust's table and its changelog (aiokafka, "
            "in Python), the views' entries, and RocksDB's background work; the profile "
            "below, with `--profile`, gives the shares. The folding worker is CPU-bound "
            "(its CPU-seconds are about its wall time), on 2 cores shared with the broker "
            "and Redis. What would lift it: message events packed many to a record (a "
            "change of the public topic's format), and one job's reports folded by shard "
            "on several partitions, as in the sharded ingest of the scale section."
        )
    ing = by_name.get("ingest")
    # The users per CPU-second figure (a target on the measured value) when it failed.
    short = [
        f for f in (ing.figures if ing else []) if f.passed is False and f.target_on != "ratio"
    ]
    per_cpu = short[0] if short else None
    if ing is not None and per_cpu is not None and per_cpu.target_min:
        d = ing.details
        lines.append(
            f"- **Ingest.** The worker holding the job's partition accepted "
            f"{per_cpu.measured:,.0f} users per CPU-second, "
            f"{per_cpu.target_min / per_cpu.measured:.1f}x short of "
            f"{per_cpu.target_min:,.0f}; a job's commands are applied in order on one "
            f"partition, by one worker, so that core bounds one job's ingest "
            f"({d['rate']:,.0f} users/s here); the naive faust agent (validation, identity, "
            f"a table check and write per user) did "
            f"{d.get('naive_users_per_cpu_second', float('nan')):,.0f} per CPU-second. "
            + _ingest_profile(d.get("profile"))
            + "The target leaves 6.7 microseconds a user. What a user costs on the loop "
            "(`python -m bench.ingest_steps`: the steps in one process, against a RocksDB "
            "store with the state's options, one run on 2026-12-06; the machine's speed "
            "moved by up to 2x that day): decoding its command 0.35 microsecond (read "
            "natively, `bulkstream_native.read_ingest`: no Python object a user but its "
            "JSON and identity; 0.7 to 1.5 the orjson way); the rules with the dedupe check "
            "(a RocksDB read only if the job's digest filter, a Bloom filter in memory, may "
            "hold the user) 0.9; its index key written 1.0 (a random key into the "
            "memtable, and the write-ahead log); its share of the batch record 0.2 and of "
            "the users view's writes (queued) 0.2. Beyond those: the users view's HSETs "
            "packed (hiredis, about 0.2 more), the changelog (aiokafka, in Python), the "
            "round trips to Redis, and RocksDB's flushes and compactions (the share "
            "above), which grow with the job: the index's keys are digests, so each new "
            "file is merged into a level that spans all of the job's keys (a family of "
            "their own did not lower the worker's figure measurably, nor did large values "
            "in blob files in a probe of RocksDB alone: CHANGELOG). The same code gave "
            "124k to 159k users per CPU-second in alternating runs of the scenario: the "
            "figure is within the noise of this host around the target. What would lift "
            "it: the index keys written natively (a WriteBatch made in one call, not a "
            "Python call a key) and the users view's commands packed natively. Spreading "
            "one job's ingest over partitions (the scale section) adds cores to a job, not "
            "users per CPU-second."
        )
    http = by_name.get("http")
    if http is not None and "http" in failed:
        during = http.details.get("during", {})
        idle = http.details.get("idle", {})
        lines.append(
            f"- **GET latency and CPU.** The workers ran at niceness "
            f"{http.details.get('worker_niceness', 0)}. The API's own histogram put "
            f"{during.get('server_within_5ms', float('nan')):.0%} of the GETs during the "
            f"fan-out under 5 ms; the rest of a slow GET is spent waiting for a core that "
            f"the workers and the broker hold. A GET cost "
            f"{during.get('api_cpu_ms_per_request', float('nan')):.2f} ms of the API's CPU "
            f"during the fan-out, {idle.get('api_cpu_ms_per_request', float('nan')):.2f} ms "
            f"in the idle window; "
            f"{during.get('answered_from_copy', float('nan')):.0%} of the fan-out window's "
            f"GETs were answered from the API's copy of the job view, "
            f"{idle.get('answered_from_copy', float('nan')):.0%} of the idle window's (the "
            f"workers write a running job's view at most every "
            f"BULKSTREAM_JOB_VIEW_INTERVAL_MS, and each write drops the copy). A GET from "
            f"the copy is answered by the API's HTTP protocol (`streams.api.protocol`, "
            f"uvicorn's httptools protocol) once its headers are parsed, before any ASGI: "
            f"what is left is uvloop's socket handling, httptools' parse and uvicorn's "
            f"callbacks for each request (the scope it starts, the keep-alive timer). What "
            f"would move it: a server with no Python per request. "
            f"On separate machines or pods with CPU requests the latency is another "
            f"measurement."
        )
    if len(lines) == 2:
        return []
    return [*lines, ""]


def render(
    results: list[ScenarioResult],
    facts: dict[str, str],
    command: str,
    started: str,
    finished: str,
    failures: dict[str, str],
) -> str:
    lines = ["# Benchmarks", "", _INTRO, f"Run {started} to {finished} by `{command}`.", ""]
    lines += ["## Results", ""]
    lines += [
        "| scenario | figure | measured | baseline | ratio | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for figure in result.figures:
            lines.append(_row(result.name, figure))
    for name, error in failures.items():
        lines.append(f"| {name} | did not complete: {error[:160]} | | | | | **FAIL** |")
    lines += ["", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    lines += ["", "## How to reproduce", "", _REPRODUCE, "## Scenarios", ""]
    for result in results:
        if result.name == "scale":
            continue
        lines += [f"### {result.title}", ""]
        if result.name in _SCENARIOS:
            lines += [_SCENARIOS[result.name], ""]
        if result.checks:
            lines += ["Checked: " + "; ".join(result.checks) + ".", ""]
        if result.details:
            lines += ["Numbers: " + _details(result.details) + ".", ""]
        lines += [f"Note: {note}" for note in result.notes]
        if result.notes:
            lines.append("")
    scale = next((r for r in results if r.name == "scale"), None)
    lines += ["## Scale on paper: a 100M-user job", ""]
    if scale is None:
        lines.append("Needs the fanout and ingest scenarios in the same run.")
    else:
        lines += [line for note in scale.notes for line in (note, "")][:-1]
    lines += ["", *_why(results, facts), *_profile(results)]
    lines += [*explain.small_jobs(results), *explain.group_changes(results)]
    lines += ["## What the process logs said", ""]
    findings = [(r.name, f) for r in results for f in r.log_findings]
    if not findings:
        lines.append("No warnings or errors in the worker, API or naive agent logs.")
    lines += [f"- {name}: {finding}" for name, finding in findings]
    return "\n".join(lines).rstrip() + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
