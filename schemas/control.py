"""Control messages on `bulk.control` (co-partitioned with `bulk.commands`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, RootModel

from schemas.base import WireModel


class RebuildViews(WireModel):
    """Rewrite every Redis view of the jobs on this partition from the job state."""

    kind: Literal["rebuild-views"] = "rebuild-views"


class PurgeJob(WireModel):
    """Delete a finished job whose retention ran out: its state and its views."""

    kind: Literal["purge"] = "purge"
    job_id: str


class ControlMessage(RootModel[Annotated[RebuildViews | PurgeJob, Field(discriminator="kind")]]):
    pass
