"""The sections of docs/benchmarks.md that explain a scenario's figures beyond the table:
where a small job's time goes, and how each way of running the fan-out group fared
while workers came and went. Written from a run's details, like the rest of the file.
"""

from __future__ import annotations

from typing import Any

from .results import ScenarioResult


def small_jobs(results: list[ScenarioResult]) -> list[str]:
    """Where the time of a 10-user job goes, from the run command to COMPLETED seen."""
    latency = next((r for r in results if r.name == "latency"), None)
    stages = latency.details.get("stages_ms") if latency else None
    if latency is None or not stages:
        return []
    median: dict[str, float] = stages.get("median", {})
    slowest: dict[str, float] = stages.get("slowest job", {})
    lines = [
        "## Small jobs: where the time goes",
        "",
        "Each step of a 10-user job, from its run request to the first GET that says "
        "`COMPLETED` (medians over the jobs, and the slowest job's; from record timestamps "
        "and a read_committed watcher, one host and one clock):",
        "",
        "| step | median ms | slowest job ms |",
        "|---|---|---|",
    ]
    for step, ms in median.items():
        lines.append(f"| {step} | {ms:,.1f} | {slowest.get(step, float('nan')):,.1f} |")
    lines += [
        "",
        "- The API answers a command once the worker has applied it: the worker writes the "
        "result and announces it on Redis pub/sub in one round trip, and the API's one "
        "subscriber wakes the request (it polled Redis with a back-off of 2 to 50 ms before).",
        "- The fan-out's step is one transaction: the page's sends, its progress report, its "
        "done-marker and the consumer offsets, committed together; the report becomes visible "
        "to read_committed readers when the commit's markers are written.",
        "- The fan-out loop asks nothing of the broker between transactions: its lag gauge "
        "uses the watermarks of the last fetch. Asked on the loop's thread every 5 s, one "
        "watermark request took up to 1.5 s and held a small job's page that long (the p99 "
        "of 10-user jobs was 1.6 s; that one job of 40).",
        "- The aggregate reads the report through its progress feed (librdkafka, whose fetch "
        "in flight names every partition it reads, so the broker answers it as soon as a "
        "report comes) and folds a fetch's reports at once. Until 2026-12-07 faust's "
        "consumer read them: its fetch in flight left out a partition whose records were "
        "not all consumed yet, so a report arriving meanwhile waited for that fetch to end "
        "(the broker held it up to 100 ms, `streams/runtime/patches/fetch_wait.py`), and "
        "its agent took the reports one at a time, several awaits each.",
        "",
    ]
    return lines


def group_changes(results: list[ScenarioResult]) -> list[str]:
    """Each configuration of the fan-out group, and which one is kept and why."""
    rebalance = next((r for r in results if r.name == "rebalance"), None)
    configs: dict[str, dict[str, Any]] = (
        rebalance.details.get("configurations", {}) if rebalance else {}
    )
    if not configs:
        return []
    changes = ["join", "leave", "rejoin", "restart"]
    lines = [
        "## Workers coming and going: which group configuration",
        "",
        "Delay (p99 over the jobs running during the change, against the steady median) and "
        "the seconds until every partition was held again, per configuration of the fan-out "
        "group, in this run:",
        "",
        *_table_head("steady p50 / p99 ms", "delay p99 ms (settled s)", changes),
    ]
    for name, outcome in configs.items():
        delays, settled = outcome.get("delay_p99_ms", {}), outcome.get("settled_s", {})
        cells = [
            f"{delays.get(c, float('nan')):,.0f} ({settled.get(c, float('nan')):.1f})"
            for c in changes
        ]
        lines.append(
            f"| {name} | {outcome.get('steady_p50_ms', 0):,.0f} / "
            f"{outcome.get('steady_p99_ms', 0):,.0f} | " + " | ".join(cells) + " |"
        )
    larges = {name: o["large_job"] for name, o in configs.items() if o.get("large_job")}
    if larges:
        first = next(iter(larges.values()))
        lines += [
            "",
            f"A large job in flight meanwhile ({first['users']:,} users run at "
            f"{first['sends_per_second']:,} sends/s): the longest time one of its pages took "
            "from its record on the pages topic to its progress report, among the pages in "
            "flight during each change, against the p99 of the steady windows' pages (ms):",
            "",
            *_table_head("steady p99 ms", "longest page ms", changes),
        ]
        for name, large in larges.items():
            longest = large.get("page_delay_max_ms", {})
            steady_p99 = large.get("steady_p99_ms")
            lines.append(
                f"| {name} | {_ms(steady_p99)} | "
                + " | ".join(_ms(longest.get(c)) for c in changes)
                + " |"
            )
    lines += [
        "",
        "Kept: **range, eager, with dynamic members** (the default since 2026-12-04; "
        "cooperative-sticky before), from four runs that day: in three, eager assignment kept "
        "the small jobs (p99) and the large job's pages under about 1 s at every change, where "
        "cooperative-sticky reached 1.8-2.5 s at a join or a restart; in the fourth, eager "
        "went over 1 s at a leave and a restart (small jobs 1.4 and 1.3 s, pages 1.4 and "
        "1.5 s) and cooperative-sticky at a join (small jobs 1.3 s) (CHANGELOG). Neither holds "
        "1 s at every change in every run on this machine. The tables above are this run's. "
        "Under cooperative-sticky a joining member is given nothing in "
        "a first round while the partitions it will take are revoked from the others, and "
        "those partitions have no owner until a second round (1-2 s here, heartbeats every "
        "500 ms or not); an eager change stops every partition, but for one round, and each "
        "member mostly gets its own partitions back. What eager assignment costs: more "
        "partitions change hands at a change, and a new owner reads their done-markers first "
        "(from where it last stopped, else from the start: `python -m bench.done_restore` "
        "reads 1,000,000 in about 3 s here). With static members a worker that leaves for "
        "good keeps its partitions until its session times out (10 s), and every job that "
        "lands on them waits that long: a scale-in stalls.",
        "",
    ]
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _table_head(steady: str, each: str, changes: list[str]) -> list[str]:
    """A configurations table's head: its steady column, then one column per change."""
    columns = " | ".join(f"{change}: {each}" for change in changes)
    return [f"| configuration | {steady} | {columns} |", "|---|---|" + "---|" * len(changes)]
