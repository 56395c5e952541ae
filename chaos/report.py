"""docs/reliability.md from the tallies: one table row per scenario, then the details."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from chaos.run import Tally


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
    path.write_text(text + "\n")
