"""`python -m bench`: run the scenarios against the local stack and write docs/benchmarks.md.

python -m bench [--users N] [--workers W] [--only name[,name]] [--profile] [--out PATH] [--keep]
python -m bench --render .local/bench/<run id>/results.json [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import (
    api,
    fanout,
    group_changes,
    ingest,
    memory,
    outcomes,
    small_jobs,
    versus_naive,
)
from .env import (
    REPO,
    Options,
    Run,
    cpu_ticks,
    machine_facts,
    plant_sentinel,
    restarted,
    say,
    sentinel_intact,
    stack_identity,
    stolen_share,
)
from .procs import settle
from .report import render, write
from .results import Figure, ScenarioResult
from .scale import compute

SCENARIOS: dict[str, Callable[[Run, Options], ScenarioResult]] = {
    "fanout": fanout.run,
    "naive": versus_naive.run,
    "ingest": ingest.run,
    "http": api.run,
    "memory": memory.run,
    "outcomes": outcomes.run,
    "latency": small_jobs.run,
    "rebalance": group_changes.run,
}

# Where the whole suite's report goes.
DOCS = REPO / "docs" / "benchmarks.md"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000, help="users per job (N)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (W)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios among {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the fan-out's workers")
    parser.add_argument(
        "--memory-users",
        type=int,
        default=None,
        metavar="M",
        help="the memory scenario compares N with M users instead of N/10 with N "
        "(10000000: the 10M job; it takes about ten times the 1M job's time)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the report (default: docs/benchmarks.md for the whole suite and --render; "
        "the run's own .local/bench/<run id>/benchmarks.md with --only, so one scenario "
        "never replaces the whole report)",
    )
    parser.add_argument("--keep", action="store_true", help="keep topics, keys and state")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: rewrite --out from a run's saved .local/bench/<run>/results.json",
    )
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.only.split(","))) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.users < 10_000 or args.users % 1000:
        parser.error("--users must be a multiple of 1000, at least 10000")
    if args.memory_users is not None and (args.memory_users < 10_000 or args.memory_users % 1000):
        parser.error("--memory-users must be a multiple of 1000, at least 10000")
    return args


def report_path(args: argparse.Namespace, log_dir: Path | None) -> Path:
    """Where the report goes: `--out`; else, for some scenarios (`--only`), the run's own
    directory `log_dir`; else (the whole suite, or a render) docs/benchmarks.md."""
    if args.out is not None:
        return Path(args.out)
    if args.only and log_dir is not None:
        return log_dir / "benchmarks.md"
    return DOCS


def derived(results: list[ScenarioResult]) -> list[ScenarioResult]:
    """Figures that need two scenarios: the speed-up over the naive agent, the scale paragraph."""
    by_name = {r.name: r for r in results}
    fan, naive, ing = by_name.get("fanout"), by_name.get("naive"), by_name.get("ingest")
    if fan is not None and naive is not None:
        naive.figures.append(
            Figure(
                label="fan-out speed-up over the naive faust agent",
                measured=fan.details["rate"],
                unit="recipients/s",
                baseline=naive.details["rate"],
                baseline_label="naive agent",
            )
        )
    if fan is not None:
        return [*results, compute(fan.details, ing.details if ing else None)]
    return results


def report(record: dict[str, Any], out: Path) -> list[ScenarioResult]:
    """Write the whole document from a run record; the results with the derived ones."""
    results = derived([ScenarioResult.from_json(r) for r in record["results"]])
    text = render(
        results,
        record["facts"],
        record["command"],
        record["started"],
        record["finished"],
        record["failures"],
    )
    write(out, text)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.render is not None:
        out = report_path(args, None)
        report(json.loads(args.render.read_text()), out)
        say(f"wrote {out} from {args.render}")
        return 0
    chosen = [name for name in SCENARIOS if not args.only or name in args.only.split(",")]
    opts = Options(
        users=args.users,
        workers=args.workers,
        profile=args.profile,
        memory_users=args.memory_users,
    )
    bench = Run.create(keep=args.keep)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    facts = machine_facts()
    ticks = cpu_ticks()
    say(f"run {bench.run_id}: {', '.join(chosen)}; N={opts.users:,}, W={opts.workers}")
    results: list[ScenarioResult] = []
    failures: dict[str, str] = {}
    try:
        for name in chosen:
            waited = settle()
            say(f"{name}: the machine settled in {waited:.0f} s")
            began = time.monotonic()
            stack = stack_identity(bench.base)
            sentinel = f"bench:{bench.run_id}:sentinel"
            token = plant_sentinel(bench.base, sentinel)
            try:
                results.append(SCENARIOS[name](bench, opts))
            except Exception as exc:
                traceback.print_exc()
                failures[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            gone = [f"{what} restarted" for what in restarted(stack, stack_identity(bench.base))]
            if not sentinel_intact(bench.base, sentinel, token):
                gone.append("Redis flushed")
            if gone:
                note = f"{' and '.join(gone)} during this scenario (not by the benchmark)"
                if results and results[-1].name == name:
                    results[-1].notes.append(note)
                if name in failures:
                    failures[name] += f" ({note})"
            say(f"{name}: done in {time.monotonic() - began:.0f} s")
    finally:
        bench.close()
    ended = machine_facts()
    facts["load (1, 5, 15 min) at start / end"] = f"{facts.pop('load')} / {ended['load']}"
    facts["Python speed at start / end (M loop steps per CPU-second, `bench.env.python_speed`)"] = (
        f"{facts.pop('speed')} / {ended['speed']}"
    )
    facts["CPU time stolen by the hypervisor during the run"] = stolen_share(ticks, cpu_ticks())
    record = {
        "command": command,
        "started": started,
        "finished": time.strftime("%H:%M:%S"),
        "facts": facts,
        "failures": failures,
        "results": [r.to_json() for r in results],
    }
    (bench.log_dir / "results.json").write_text(json.dumps(record, indent=2, default=str))
    out = report_path(args, bench.log_dir)
    results = report(record, out)
    say(f"wrote {out} (raw results and logs in {bench.log_dir})")
    for result in results:
        for figure in result.figures:
            ratio = f", ratio {figure.ratio:.2f}" if figure.ratio is not None else ""
            base = f", baseline {figure.baseline:,.2f}" if figure.baseline is not None else ""
            verdict = {True: " PASS", False: " FAIL", None: ""}[figure.passed]
            print(
                f"  {result.name}: {figure.label}: {figure.measured:,.2f} {figure.unit}"
                f"{base}{ratio}{verdict}"
            )
    for name, error in failures.items():
        print(f"  {name}: FAILED: {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
