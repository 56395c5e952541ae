"""docs/reliability.md from the tallies: one table row per scenario, then the details.

The report of `python -m chaos --cluster` is a section of its own at the end
of the file (from `CLUSTER_MARK` on): each kind of run rewrites only its part."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from chaos.cluster_scenarios import ClusterTally
from chaos.run import Tally

CLUSTER_MARK = "<!-- written by `python -m chaos --cluster`; the rest by `python -m chaos` -->"


def _split(path: Path) -> tuple[str, str]:
    """(single-broker report, cluster section) of the file as it is."""
    text = path.read_text() if path.exists() else ""
    head, mark, tail = text.partition(CLUSTER_MARK)
    return head.rstrip("\n"), (mark + tail).rstrip("\n")


def write_report(
    path: Path, tallies: list[Tally], *, command: str, when: datetime, machine: str, logs: Path
) -> None:
    rows = [
        "| scenario | users | faults | sends seen | duplicates | lost | counters exact | 5xx "
        "| result |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for t in tallies:
        rows.append(
            f"| {t.scenario} | {t.users:,} | {len(t.faults)} | {t.sends_seen:,} | "
            f"{t.duplicates} | {t.lost} | {'yes' if t.counters_exact else f'no {t.counters}'} | "
            f"{t.http_5xx} | {'**pass**' if t.ok else '**FAIL**'} |"
        )
    details = []
    for t in tallies:
        details.append(f"### {t.scenario} ({t.seconds:.0f} s)\n")
        details += [f"- fault: {fault}" for fault in t.faults]
        details += [
            f"- check: {name}: {'yes' if held else 'NO'}" for name, held in t.checks.items()
        ]
        details += [f"- {note}" for note in t.notes]
        details.append(
            f"- counters (received, enqueued, failures): {t.counters}; "
            f"unexpected sends: {t.unexpected}\n"
        )
    text = "\n".join(
        [
            "# Reliability",
            "",
            "Counted, not sampled: each scenario runs a real job on its own topics through",
            "real worker processes and the local Kafka and Redis, injects its faults, and",
            "counts every send a `read_committed` consumer of `bulk.sends` sees against",
            "the users ingested (by their deterministic `messageId`). Target in every",
            "scenario: 0 lost, 0 duplicates, exact counters, 0 5xx.",
            "",
            f"Finished {when:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({machine}) with",
            f"`{command}` (`make chaos`); worker logs were in `{logs}`.",
            "",
            *rows,
            "",
            "## Details",
            "",
            *details,
        ]
    )
    _, cluster = _split(path)
    path.write_text(text + "\n" + (f"\n{cluster}\n" if cluster else ""))


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def write_cluster_report(
    path: Path,
    tallies: list[ClusterTally],
    *,
    command: str,
    when: datetime,
    machine: str,
    logs: Path,
    settings: str,
) -> None:
    """Replace the cluster section of the file (or add it at the end)."""
    rows = [
        "| scenario | users | sends seen | duplicates | lost | counters exact "
        "| 5xx | 503 + Retry-After | fan-out | result |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    faults = [
        "| scenario | fault | first accepted write | first send produced after | "
        "first send seen after | longest pause in sends seen |",
        "|---|---|---:|---:|---:|---:|",
    ]
    details = []
    for t in tallies:
        rows.append(
            f"| {t.scenario} | {t.users:,} | {t.sends_seen:,} | {t.duplicates} | {t.lost} | "
            f"{'yes' if t.counters_exact else f'no {t.counters}'} | {t.http_5xx} | "
            f"{t.answers.get('503+Retry-After', 0)} | {_seconds(t.fanout_seconds)} | "
            f"{'**pass**' if t.ok else '**FAIL**'} |"
        )
        for f in t.fault_list:
            m = f.measures
            faults.append(
                f"| {t.scenario} | {f.describe()} | {_seconds(m.get('first accepted write'))} | "
                f"{_seconds(m.get('send produced'))} | {_seconds(m.get('send seen'))} | "
                f"{_seconds(m.get('send pause'))} |"
            )
        details.append(f"#### {t.scenario} ({t.seconds:.0f} s)\n")
        details += [f"- fault: {fault}" for fault in t.faults]
        details += [
            f"- check: {name}: {'yes' if held else 'NO'}" for name, held in t.checks.items()
        ]
        details += [f"- {note}" for note in t.notes]
        details.append(f"- HTTP answers: {dict(sorted(t.answers.items()))}")
        details.append(
            f"- counters (received, enqueued, failures): {t.counters}; "
            f"unexpected sends: {t.unexpected}\n"
        )
    section = "\n".join(
        [
            CLUSTER_MARK,
            "",
            "## Three brokers, one lost",
            "",
            "The same count on the local three-node KRaft cluster (`make cluster-up`:",
            "three processes, each broker and controller, ports 19092/19192/19292), with",
            f"{settings}. A job of {tallies[0].users:,} users goes through the HTTP API",
            "(1,000-user requests from 4 clients that retry as Courier's SDKs do, with",
            "the same Idempotency-Key, after Retry-After) into 2 workers, while a broker",
            "holding one of the job's roles is SIGKILLed. A 503 is allowed only with",
            "Retry-After, while a write cannot be accepted; any other 5xx fails the run.",
            "",
            f"Finished {when:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({machine}) with",
            f"`{command}` (`make chaos-cluster`); logs were in `{logs}`.",
            "",
            *rows,
            "",
            "Each fault: its moment is the SIGKILL; *first accepted write* is the first",
            "2xx answer to a request sent after it; *first send produced after* is the",
            "earliest record timestamp after it among the committed sends; *first send",
            "seen after* and *longest pause* are when a `read_committed` reader of",
            "`bulk.sends` got sends after it, and the longest gap between them until the",
            "job's last send (the recovery, as a downstream consumer sees it).",
            "",
            *faults,
            "",
            "### Details",
            "",
            *details,
        ]
    )
    head, _ = _split(path)
    path.write_text((head + "\n\n" if head else "") + section.rstrip("\n") + "\n")
