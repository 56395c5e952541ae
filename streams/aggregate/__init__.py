"""The aggregate stage: applies create / ingest / run / cancel / pause / resume to each
job's state (faust table on RocksDB, keyed by job id), hands the fan-out a job's pages a
window at a time, counts the fan-out's page reports, folds the delivery reports, writes
the Redis views, and keeps house (view rebuilds, retention). Commands come in through
the command feed.
"""

from __future__ import annotations

from streams.aggregate import delivery, housekeeping, progress, release, stage
from streams.aggregate.pipeline import Pipeline, build_pipeline


def register(pipeline: Pipeline) -> None:
    """Put every agent, task and timer of the stage on the pipeline's app."""
    releases = release.register(pipeline)
    stage.register(pipeline, releases)
    progress.register(pipeline, releases)
    housekeeping.register(pipeline, releases)
    delivery.register(pipeline)


__all__ = ["Pipeline", "build_pipeline", "register"]
