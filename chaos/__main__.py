"""`python -m chaos` (`make chaos`): run the scenarios, write docs/reliability.md.

python -m chaos                      # every scenario, 200,000 users, 5 kill rounds
python -m chaos --users 20000 --rounds 2 --only kills,poison
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

from chaos.report import write_report
from chaos.run import Tally
from chaos.scenarios import SCENARIOS
from streams.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument(
        "--rounds", type=int, default=5, help="kills during ingest, and during fan-out"
    )
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--out", type=Path, default=Path("docs/reliability.md"))
    parser.add_argument("--no-report", action="store_true", help="print, do not write the doc")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")

    logs = Path(tempfile.mkdtemp(prefix="bulkstream-chaos-"))
    base = Settings(data_dir=logs / "state", metrics_port=0)
    tallies: list[Tally] = []
    for name in names:
        print(f"[chaos] {name}: {args.users:,} users", flush=True)
        try:
            tally = SCENARIOS[name](base, logs, args.users, args.rounds)
        except Exception:
            tally = Tally(name, args.users)
            tally.checks["scenario ran to the end"] = False
            tally.notes.append(traceback.format_exc(limit=3).strip().splitlines()[-1])
            traceback.print_exc()
        tallies.append(tally)
        print(f"[chaos] {name}: {'OK' if tally.ok else 'FAILED'} {tally}", flush=True)

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


if __name__ == "__main__":
    sys.exit(main())
