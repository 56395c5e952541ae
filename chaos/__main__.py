"""`python -m chaos` (`make chaos`): run the scenarios, write docs/reliability.md.

python -m chaos                      # every scenario, 200,000 users, 5 kill rounds
python -m chaos --users 20000 --rounds 2 --only kills,redis-flush
python -m chaos --cluster            # the multi-broker faults, on `make cluster-up`'s cluster
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from chaos.cluster import LocalCluster
from chaos.cluster_scenarios import CLUSTER_SCENARIOS, DOWN_SECONDS, ClusterTally
from chaos.report import write_cluster_report, write_report
from chaos.run import Tally
from chaos.scenarios import SCENARIOS
from streams.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument(
        "--rounds", type=int, default=5, help="kills during ingest, and during fan-out"
    )
    parser.add_argument("--only", default=None, help="comma-separated scenarios")
    parser.add_argument("--out", type=Path, default=Path("docs/reliability.md"))
    parser.add_argument("--no-report", action="store_true", help="print, do not write the doc")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the broker faults on a 3-broker cluster (make cluster-up; KAFKA_BOOTSTRAP_SERVERS "
        "its brokers, BULKSTREAM_REPLICATION_FACTOR=3, BULKSTREAM_MIN_INSYNC_REPLICAS=2)",
    )
    parser.add_argument(
        "--down",
        type=float,
        default=DOWN_SECONDS,
        help="--cluster: seconds a killed broker stays down",
    )
    args = parser.parse_args(argv)
    known: dict[str, object] = dict(CLUSTER_SCENARIOS if args.cluster else SCENARIOS)
    names = [name.strip() for name in (args.only or ",".join(known)).split(",") if name.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}")

    logs = Path(tempfile.mkdtemp(prefix="bulkstream-chaos-"))
    base = Settings(data_dir=logs / "state", metrics_port=0)
    if args.cluster:
        return _cluster(parser, args, argv, names, base, logs)
    tallies = _each(
        names,
        "",
        args.users,
        lambda name: SCENARIOS[name](base, logs, args.users, args.rounds),
        lambda name: Tally(name, args.users),
    )

    command = " ".join(["python -m chaos", *(argv if argv is not None else sys.argv[1:])])
    if not args.no_report:
        write_report(
            args.out,
            tallies,
            command=command,
            when=datetime.now(UTC),
            machine=f"{platform.machine()}, Python {platform.python_version()}",
            logs=logs,
        )
        print(f"[chaos] wrote {args.out} (logs in {logs})")
    return 0 if all(t.ok for t in tallies) else 1


def _cluster(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    argv: list[str] | None,
    names: list[str],
    base: Settings,
    logs: Path,
) -> int:
    brokers = LocalCluster(base.kafka_bootstrap_servers).metadata().brokers
    if len(brokers) < 3 or base.replication_factor < 3:
        parser.error(
            f"--cluster wants 3 brokers and BULKSTREAM_REPLICATION_FACTOR=3; "
            f"{base.kafka_bootstrap_servers} has {len(brokers)} broker(s), the replication "
            f"factor is {base.replication_factor} (use `make chaos-cluster`)"
        )
    tallies = _each(
        names,
        "cluster ",
        args.users,
        lambda name: CLUSTER_SCENARIOS[name](base, logs, args.users, args.down),
        lambda name: ClusterTally(name, args.users),
    )
    command = " ".join(["python -m chaos", *(argv if argv is not None else sys.argv[1:])])
    if not args.no_report:
        isr = base.min_insync_replicas or "the broker's default"
        write_cluster_report(
            args.out,
            tallies,
            command=command,
            when=datetime.now(UTC),
            machine=f"{platform.machine()}, Python {platform.python_version()}",
            logs=logs,
            settings=(
                f"`BULKSTREAM_REPLICATION_FACTOR={base.replication_factor}`, "
                f"`BULKSTREAM_MIN_INSYNC_REPLICAS={isr}`"
            ),
        )
        print(f"[chaos] wrote {args.out} (logs in {logs})")
    return 0 if all(t.ok for t in tallies) else 1


T = TypeVar("T", Tally, ClusterTally)


def _each(
    names: list[str],
    kind: str,
    users: int,
    scenario: Callable[[str], T],
    failed: Callable[[str], T],
) -> list[T]:
    """Run each named scenario in turn; one that raised is a failed tally saying why."""
    tallies: list[T] = []
    for name in names:
        print(f"[chaos] {kind}{name}: {users:,} users", flush=True)
        try:
            tally = scenario(name)
        except Exception:
            tally = failed(name)
            tally.checks["scenario ran to the end"] = False
            tally.notes.append(traceback.format_exc(limit=3).strip().splitlines()[-1])
            traceback.print_exc()
        tallies.append(tally)
        print(f"[chaos] {name}: {'OK' if tally.ok else 'FAILED'} {tally}", flush=True)
    return tallies


if __name__ == "__main__":
    sys.exit(main())
