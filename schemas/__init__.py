"""Wire contracts of bulkstream as pydantic v2 models (no Kafka code here).

`schemas/json/` holds their exported JSON Schemas for upstream producers;
`python -m schemas.export` writes them and a test fails when they are stale.
"""

from schemas.commands import (
    BulkUser,
    Command,
    CommandEnvelope,
    CommandResult,
    CreateJob,
    IngestError,
    IngestUsers,
    JobMessage,
    RunJob,
)
from schemas.events import JobEvent, SendEvent
from schemas.views import JobStatus, JobView, UserStatus, UserView

__all__ = [
    "BulkUser",
    "Command",
    "CommandEnvelope",
    "CommandResult",
    "CreateJob",
    "IngestError",
    "IngestUsers",
    "JobEvent",
    "JobMessage",
    "JobStatus",
    "JobView",
    "RunJob",
    "SendEvent",
    "UserStatus",
    "UserView",
]
