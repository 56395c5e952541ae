"""The API's errors: every one answers JSON `{"message", "type"}` with Courier's type strings.

Courier's reference ("Responses & Error Codes") gives `invalid_request_error`
for 400, 404, 409 and 413 (and so for every other 4xx of a request the client
must change), `authentication_error` for 401, `authorization_error` for 403,
`rate_limit_error` for 429 and `api_error` for 5xx. `message` is for people:
it names the field or the limit.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import JSONResponse


class JsonResponse(JSONResponse):
    """A JSON answer written by orjson, as every stage writes JSON: compact UTF-8, like
    Starlette's own, in a tenth of the time."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ErrorType(StrEnum):
    INVALID_REQUEST = "invalid_request_error"
    AUTHENTICATION = "authentication_error"
    AUTHORIZATION = "authorization_error"
    RATE_LIMIT = "rate_limit_error"
    API = "api_error"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        kind: ErrorType | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind or _type_of(status)
        self.message = message
        self.headers = headers or {}

    def response(self) -> JsonResponse:
        return JsonResponse(
            {"message": self.message, "type": self.kind.value},
            status_code=self.status,
            headers=self.headers,
        )


def _type_of(status: int) -> ErrorType:
    if status == 401:
        return ErrorType.AUTHENTICATION
    if status == 403:
        return ErrorType.AUTHORIZATION
    if status == 429:
        return ErrorType.RATE_LIMIT
    if status >= 500:
        return ErrorType.API
    return ErrorType.INVALID_REQUEST


def invalid(message: str) -> ApiError:
    return ApiError(400, message)


def from_validation(exc: ValidationError, root: str = "") -> ApiError:
    """A 400 that names the first offending field, e.g. `users.3.to`."""
    first = exc.errors()[0]
    path = ".".join(str(part) for part in (root, *first["loc"]) if part != "")
    where = f"{path}: " if path else ""
    return invalid(f"{where}{first['msg']}")


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "Missing or unknown API key; send Authorization: Bearer <key>",
        {"WWW-Authenticate": "Bearer"},
    )


def not_found(job_id: str) -> ApiError:
    return ApiError(404, f"Job {job_id} not found")


def too_large(message: str) -> ApiError:
    return ApiError(413, message)


def unavailable(what: str) -> ApiError:
    return ApiError(503, f"{what} is unavailable; retry later", {"Retry-After": "5"})
