"""The base model of every wire contract: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

JsonObject = dict[str, Any]


class WireModel(BaseModel):
    """Serialises by alias (camelCase) and accepts either spelling on input."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def to_wire(self) -> JsonObject:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
