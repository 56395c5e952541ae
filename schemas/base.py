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

# What a number on the wire may be: an integer of 64 bits (signed or unsigned), or a
# finite double. orjson, which every stage encodes with, holds nothing else.
INT_RANGE = (-(2**63), 2**64 - 1)


def first_inexact_number(value: Any) -> str | None:
    """The path (`users.3.data.n`) of the first number in `value` that the wire cannot
    carry exactly (an integer outside 64 bits, an infinite or NaN float), or None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not INT_RANGE[0] <= item <= INT_RANGE[1]:
                return path or "(top)"
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                return path or "(top)"
        elif isinstance(item, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in enumerate(item))
    return None


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
        if self._sent is not None:
            return self._sent
        dumped: JsonObject = self.to_wire()
        return dumped
