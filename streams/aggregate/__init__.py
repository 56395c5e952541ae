"""The aggregate stage: applies create / ingest / run / cancel / pause / resume to each
job's state (faust table on RocksDB, keyed by job id), hands the fan-out a job's pages a
window at a time, counts the fan-out's page reports, folds the delivery reports, writes
the Redis views, and keeps house (view rebuilds, retention). Commands, page reports and
delivery reports come in through feeds (`command_feed`).
"""

from __future__ import annotations

from streams.aggregate import delivery, housekeeping, progress, release, stage
from streams.aggregate.command_feed import Feeds
from streams.aggregate.pipeline import Pipeline, build_pipeline


def register(pipeline: Pipeline) -> None:
    """Put every agent, task, feed and timer of the stage on the pipeline's app."""
    feeds = Feeds()
    pipeline.app.feed = feeds  # the runtime pauses it before faust revokes partitions
    releases = release.register(pipeline)
    stage.register(pipeline, releases, feeds)
    progress.register(pipeline, releases, feeds)
    housekeeping.register(pipeline, releases)
    delivery.register(pipeline, feeds)


__all__ = ["Pipeline", "build_pipeline", "register"]
