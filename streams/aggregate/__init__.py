"""The aggregate stage: applies create / ingest / run to each job's state (faust table on
RocksDB, keyed by job id), counts the fan-out's page reports, writes the Redis views,
and keeps house (view rebuilds, retention). Commands come in through the command feed.
"""

from __future__ import annotations

from streams.aggregate import housekeeping, progress, stage
from streams.aggregate.pipeline import Pipeline, build_pipeline


def register(pipeline: Pipeline) -> None:
    """Put every agent, task and timer of the stage on the pipeline's app."""
    stage.register(pipeline)
    progress.register(pipeline)
    housekeeping.register(pipeline)


__all__ = ["Pipeline", "build_pipeline", "register"]
