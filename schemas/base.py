"""The base models of every wire contract: camelCase on the wire, snake_case in Python.

`AsSent` is the base of what a client sends (a job's message, a user): it is
validated like any model, and written back exactly as it was sent, explicit
`null`s, unknown keys and key order included (BRIEF §4.9).
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidatorFunctionWrapHandler,
    model_serializer,
    model_validator,
)
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


class AsSent(WireModel):
    """Client input: checked field by field, but dumped as the object it was parsed from.

    A model built in Python (not parsed from a JSON object) dumps as usual."""

    model_config = ConfigDict(extra="allow")

    _sent: JsonObject | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_as_sent(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        model = handler(value)
        if isinstance(value, dict) and isinstance(model, AsSent):
            assert model.__pydantic_private__ is not None
            model.__pydantic_private__["_sent"] = value
        return model

    @model_serializer(mode="wrap")
    def _dump_as_sent(self, handler: SerializerFunctionWrapHandler) -> Any:
        return self._sent if self._sent is not None else handler(self)

    def as_sent(self) -> JsonObject:
        """The object as the client sent it (as dumped, for a model built in Python)."""
        sent: JsonObject = self.to_wire()
        return sent
