"""CPU µs per delivery report of the fold's in-process steps, pure Python against native:
reading and locating a batch of report values (`ReportBatch`), folding one job's
batch from and to the stored bytes (a first round of SENT reports on messages with no
state, then a second of DELIVERED over the blocks the first wrote), and the three at
once as the delivery feed does them (natively: `fold_group`, the views' entries grouped
by bucket).

    .venv/bin/python native/bench_fold.py [--reports 10000] [--rounds 5]

The reports are the benchmark's (bench/outcomes.py): one per message, in position
order, keyed by one job. Best of `--rounds`.

On a host whose speed wanders (CPU time moved by half between runs on one), count
instructions instead: `--once` reads, locates and folds a SENT then a DELIVERED batch
natively, once, and callgrind counts the native calls' instructions alone, the same
from run to run to a thousandth:

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/tmp/fold.cg \
        --toggle-collect='*__pymethod___new____*' --toggle-collect='*__pymethod_locate__*' \
        --toggle-collect='*__pymethod_fold__*' \
        .venv/bin/python native/bench_fold.py --once    # then: callgrind_annotate /tmp/fold.cg
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import orjson

from schemas.delivery import DeliveryStatus
from streams.aggregate.fold_codec import (
    NATIVE_AVAILABLE,
    batch_reader,
    fold_encoded,
    fold_group,
    fold_reports_native,
)
from streams.aggregate.outcomes import Report, Reported
from streams.aggregate.reports import fast_report
from streams.ids import carried_positions, message_id_prefix, positional_message_id

JOB, TENANT, CREATED = "1-69248100-735a1efde685854f21970d8e", "bench", 1_764_000_000.5


def best(rounds: int, n: int, step: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        step()
        times.append(time.process_time() - started)
    return min(times) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--once", action="store_true", help="the native batches once, untimed (for callgrind)"
    )
    args = parser.parse_args()
    report_batch = batch_reader()
    if not NATIVE_AVAILABLE or report_batch is None:
        raise SystemExit("bulkstream_native is not installed: make native")
    n, rounds = args.reports, args.rounds
    ids = [positional_message_id(CREATED, JOB, i) for i in range(n)]
    values: list[bytes | None] = [
        orjson.dumps(
            {"messageId": ids[i], "jobId": JOB, "status": "SENT", "at": 1_764_000_000_000 + i}
        )
        for i in range(n)
    ]
    sent = [
        Reported(i, i, Report(ids[i], JOB, DeliveryStatus.SENT, 1_764_000_000_000 + i))
        for i in range(n)
    ]
    delivered = [
        Reported(n + i, i, report._replace(status=DeliveryStatus.DELIVERED, at=report.at + 5))
        for i, (_, _, report) in enumerate(sent)
    ]
    empty: dict[int, bytes | None] = {block: None for block in range(n // 64 + 1)}
    first = fold_encoded(None, sent, empty, JOB, TENANT)
    stored: dict[int, bytes | None] = dict(first.blocks)
    keys, partitions, offsets = [JOB.encode()] * n, [0] * n, list(range(n))
    facts = [(message_id_prefix(CREATED), n, TENANT, [])]

    def read_python() -> object:
        reports = [fast_report(value) for value in values if value is not None]
        return carried_positions([JOB] * n, [r.message_id for r in reports if r is not None])

    def read_native() -> object:
        return report_batch(values, keys, partitions, offsets).locate(facts)

    delivered_values: list[bytes | None] = [
        orjson.dumps({"messageId": ids[i], "jobId": JOB, "status": "DELIVERED", "at": at})
        for i, (_, _, (_, _, _, at, *_)) in enumerate(delivered)
    ]

    def whole_python_sent() -> object:
        read_python()
        return fold_encoded(None, sent, empty, JOB, TENANT)

    def whole_native_sent() -> object:
        read = report_batch(values, keys, partitions, offsets)
        read.locate(facts)
        return fold_group(read, 0, None, empty, TENANT)

    def whole_python() -> object:
        read_python()
        return fold_encoded(first.summary, delivered, stored, JOB, TENANT)

    def whole_native() -> object:
        read = report_batch(delivered_values, keys, partitions, offsets)
        read.locate(facts)
        return fold_group(read, 0, first.summary, stored, TENANT)

    if args.once:
        whole_native_sent()
        whole_native()
        return
    rows = [
        ("read and locate the report values", read_python, read_native),
        (
            "fold SENT (no state yet)",
            lambda: fold_encoded(None, sent, empty, JOB, TENANT),
            lambda: fold_reports_native(None, sent, empty, JOB, TENANT),
        ),
        (
            "fold DELIVERED (over SENT)",
            lambda: fold_encoded(first.summary, delivered, stored, JOB, TENANT),
            lambda: fold_reports_native(first.summary, delivered, stored, JOB, TENANT),
        ),
        ("read, locate and fold SENT (a feed's batch)", whole_python_sent, whole_native_sent),
        ("read, locate and fold DELIVERED (a feed's batch)", whole_python, whole_native),
    ]
    print(f"| per report ({n:,} in a batch, best of {rounds}) | Python | native |")
    print("|---|---|---|")
    for name, pure, native in rows:
        print(f"| {name} | {best(rounds, n, pure):.2f} µs | {best(rounds, n, native):.2f} µs |")


if __name__ == "__main__":
    main()
