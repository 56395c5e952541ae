"""The API's errors: every one answers JSON `{"message", "type"}`."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.responses import JSONResponse


class ApiError(Exception):
    def __init__(
        self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"message": self.message, "type": self.kind},
            status_code=self.status,
            headers=self.headers,
        )


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def from_validation(exc: ValidationError, root: str = "") -> ApiError:
    """A 400 that names the first offending field, e.g. `users.3.to`."""
    first = exc.errors()[0]
    path = ".".join(str(part) for part in (root, *first["loc"]) if part != "")
    where = f"{path}: " if path else ""
    return invalid(f"{where}{first['msg']}")


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "authentication_error",
        "Missing or unknown API key; send Authorization: Bearer <key>",
        {"WWW-Authenticate": "Bearer"},
    )


def not_found(job_id: str) -> ApiError:
    return ApiError(404, "not_found", f"Job {job_id} not found")


def unavailable(what: str) -> ApiError:
    return ApiError(503, "unavailable", f"{what} is unavailable; retry later", {"Retry-After": "5"})
