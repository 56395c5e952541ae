"""The OpenAPI document of the HTTP API, describing exactly its endpoints."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from schemas.commands import BulkUser, JobMessage, RunOptions
from schemas.delivery import UserDelivery
from schemas.views import JobView
from schemas.webhooks import EVENT_TYPES, WILDCARDS, Webhook
from streams.webhooks.targets import MAX_URL, URL_PATTERN

REF = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], mode: str, defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, ref_template=REF, mode=mode)  # type: ignore[arg-type]
    defs.update(schema.pop("$defs", {}))
    return schema


def _error(description: str, headers: tuple[str, ...] = ()) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }
    if headers:
        response["headers"] = {h: {"schema": {"type": "string"}} for h in headers}
    return response


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


COMMON = {
    "400": _error(
        "Invalid request (the message names the field or the limit); also, as Courier "
        "answers it, a second run or an ingest after the run"
    ),
    "401": _error("Missing or unknown API key", ("WWW-Authenticate",)),
    "503": _error("Kafka or Redis is unavailable", ("Retry-After",)),
}
WRITE = {
    **COMMON,
    "408": _error("The request body did not arrive in time"),
    "409": _error("A request with this Idempotency-Key is in progress", ("Retry-After",)),
    "413": _error("Body over the size limit, or too many users in one request"),
    "415": _error("The body is not JSON"),
    "422": _error(
        "This Idempotency-Key was used with a different request (or, for a create, made a "
        "job with a different message)"
    ),
}
JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Makes the request safe to retry: the first answer is replayed for 24 h.",
}


def _control(verb: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{verb}Job",
            "summary": summary,
            "parameters": [JOB_ID, IDEMPOTENCY_KEY],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["job"],
                        "properties": {"job": {"$ref": REF.format(model="JobView")}},
                    },
                    "The job, once the operation settled",
                ),
                "404": _error("No such job"),
                **WRITE,
                "400": _error(
                    "Invalid request, or an operation the job's status does not allow "
                    "(cancel of a COMPLETED job, pause of a job not run, ...)"
                ),
            },
        }
    }


def _webhooks(defs: dict[str, Any]) -> dict[str, Any]:
    """The paths of the tenant's webhooks (streams/api/webhooks.py)."""
    defs["Webhook"] = _schema(Webhook, "serialization", defs)
    defs["WebhookCreate"] = {
        "type": "object",
        "required": ["url", "events"],
        "additionalProperties": False,
        "properties": {
            "url": {
                "type": "string",
                "maxLength": MAX_URL,
                "pattern": URL_PATTERN,
                "description": "http(s); an ASCII host name or IPv4 address whose addresses "
                "are all public (unless the server allows private ones), checked again "
                "before every request",
            },
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": 50,
                "items": {"type": "string", "enum": sorted(EVENT_TYPES | WILDCARDS)},
                "description": "Event types, or `job.*`, `message.*`, `*`",
            },
        },
    }
    webhook_id = {
        "name": "webhook_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    }
    listing = {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {"$ref": REF.format(model="Webhook")}}},
    }
    return {
        "/webhooks": {
            "post": {
                "operationId": "createWebhook",
                "summary": "Add an endpoint: the tenant's events of these types are POSTed to "
                "it, signed (Standard Webhooks: webhook-id, webhook-timestamp, "
                "webhook-signature with the answered secret)",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model="WebhookCreate")}}
                    },
                },
                "responses": {
                    "201": _json({"$ref": REF.format(model="Webhook")}, "The endpoint"),
                    **WRITE,
                    "400": _error(
                        "Invalid request: a URL the policy refuses, an unknown event type, "
                        "or the tenant's limit of endpoints reached"
                    ),
                },
            },
            "get": {
                "operationId": "listWebhooks",
                "summary": "The tenant's endpoints, secrets included, oldest first",
                "responses": {"200": _json(listing, "The endpoints"), **COMMON},
            },
        },
        "/webhooks/{webhook_id}": {
            "delete": {
                "operationId": "deleteWebhook",
                "summary": "Remove an endpoint: nothing more is sent to it",
                "parameters": [webhook_id],
                "responses": {
                    "204": {"description": "Removed"},
                    "404": _error("No such endpoint"),
                    **COMMON,
                },
            }
        },
    }


@cache
def _message_schema() -> dict[str, Any]:
    """`GET /messages/{id}`: Courier's MessageDetails, plus bulkstream's own fields."""
    stamp = {"type": "integer", "description": "Unix time in milliseconds"}
    return {
        "type": "object",
        "required": ["id", "status", "enqueued", "event", "notification", "recipient"],
        "properties": {
            "id": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["SENT", "DELIVERED", "OPENED", "CLICKED", "UNDELIVERABLE"],
            },
            "enqueued": stamp,
            "sent": stamp,
            "delivered": stamp,
            "opened": stamp,
            "clicked": stamp,
            "failed": {**stamp, "description": "bulkstream's own: when it was reported FAILED"},
            "undeliverable": {
                **stamp,
                "description": "bulkstream's own: when it was reported UNDELIVERABLE",
            },
            "event": {"type": "string"},
            "notification": {"type": "string"},
            "recipient": {"type": "string"},
            "error": {"type": "string"},
            "reason": {"type": "string", "enum": ["FAILED", "BOUNCED"]},
            "provider": {"type": "string"},
            "jobId": {"type": "string", "description": "bulkstream's own: the message's job"},
        },
    }


def document(max_users: int) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    message = _schema(JobMessage, "validation", defs)
    user = _schema(BulkUser, "validation", defs)
    job = _schema(JobView, "serialization", defs)
    run_options = _schema(RunOptions, "validation", defs)
    defs.update(
        {
            "JobMessage": message,
            "BulkUser": user,
            "JobView": job,
            "RunOptions": run_options,
            "Error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {
                        "type": "string",
                        "enum": [
                            "invalid_request_error",
                            "authentication_error",
                            "authorization_error",
                            "rate_limit_error",
                            "api_error",
                        ],
                    },
                },
            },
            "UserItem": {
                "allOf": [{"$ref": REF.format(model="BulkUser")}],
                "type": "object",
                "required": ["status"],
                "properties": {
                    "recipient": {
                        "type": ["string", "null"],
                        "description": "The user's own, or the identity derived from it",
                    },
                    "status": {
                        "type": "string",
                        "enum": ["PENDING", "ENQUEUED", "ERROR", "CANCELED"],
                        "description": "CANCELED only on a canceled job (never sent)",
                    },
                    "messageId": {"type": "string"},
                    "error": {"type": "string"},
                    "delivery": {
                        "$ref": REF.format(model="UserDelivery"),
                        "description": "bulkstream's own: its message's delivery state, once "
                        "reported (status keeps Courier's values)",
                    },
                },
            },
            "UserDelivery": _schema(UserDelivery, "serialization", defs),
            "Message": _message_schema(),
        }
    )
    ingest_result = {
        "type": "object",
        "required": ["errors", "total"],
        "properties": {
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["error", "user"],
                    "properties": {"error": {"type": "string"}, "user": {}},
                },
            },
            "total": {"type": "integer", "minimum": 0},
        },
    }
    users_page = {
        "type": "object",
        "required": ["items", "paging"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": REF.format(model="UserItem")}},
            "paging": {
                "type": "object",
                "required": ["more"],
                "properties": {
                    "cursor": {"type": ["string", "null"]},
                    "more": {"type": "boolean"},
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bulkstream Bulk API",
            "version": "1",
            "description": "Courier-compatible bulk jobs: create, ingest users, run, monitor.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/bulk": {
                "post": {
                    "operationId": "createJob",
                    "parameters": [IDEMPOTENCY_KEY],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["message"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "message": {"$ref": REF.format(model="JobMessage")}
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["jobId"],
                                "properties": {"jobId": {"type": "string"}},
                            },
                            "The job was created",
                        ),
                        **WRITE,
                    },
                }
            },
            "/bulk/{job_id}": {
                "post": {
                    "operationId": "addUsers",
                    "parameters": [JOB_ID, IDEMPOTENCY_KEY],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["users"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "users": {
                                            "type": "array",
                                            "maxItems": max_users,
                                            "items": {"$ref": REF.format(model="BulkUser")},
                                        },
                                        "metadata": {
                                            "type": ["object", "null"],
                                            "description": "Carried to these users' sends",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(ingest_result, "Users ingested; rejected ones listed"),
                        "404": _error("No such job"),
                        **WRITE,
                    },
                },
                "get": {
                    "operationId": "getJob",
                    "parameters": [JOB_ID],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["job"],
                                "properties": {"job": {"$ref": REF.format(model="JobView")}},
                            },
                            "The job",
                        ),
                        "404": _error("No such job"),
                        **COMMON,
                    },
                },
            },
            "/bulk/{job_id}/run": {
                "post": {
                    "operationId": "runJob",
                    "parameters": [JOB_ID, IDEMPOTENCY_KEY],
                    "requestBody": {
                        "required": False,
                        "description": "bulkstream's own, all optional: a start time, a "
                        "send-rate limit, or a dry run. Without a body, Courier's run.",
                        "content": {
                            "application/json": {"schema": {"$ref": REF.format(model="RunOptions")}}
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "The job is running (SCHEDULED until scheduledAt; "
                            "a dry run's outcome shows in the job's dryRun)"
                        },
                        "404": _error("No such job"),
                        **WRITE,
                    },
                }
            },
            **{
                f"/bulk/{{job_id}}/{verb}": _control(verb, summary)
                for verb, summary in (
                    (
                        "cancel",
                        "Cancel the job. Answers once it settled: CANCELED, counts final "
                        "(received = enqueued + failures + canceled). Again: the same answer.",
                    ),
                    (
                        "pause",
                        "Pause the job. Answers once it settled: PAUSED, and no send of the "
                        "job is committed until it is resumed.",
                    ),
                    ("resume", "Resume a paused job: PROCESSING (or SCHEDULED) again."),
                )
            },
            "/bulk/{job_id}/retry": {
                "post": {
                    "operationId": "retryJob",
                    "summary": "bulkstream's own: a new job (same definition, parentJobId) "
                    "holding exactly the finished job's users whose delivery ended FAILED or "
                    "UNDELIVERABLE, or whom the fan-out failed; answered once it holds them all. "
                    "Run it like any job.",
                    "parameters": [JOB_ID, IDEMPOTENCY_KEY],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["jobId"],
                                "properties": {"jobId": {"type": "string"}},
                            },
                            "The new job, CREATED, every failed user ingested",
                        ),
                        "404": _error("No such job"),
                        **WRITE,
                        "400": _error(
                            "Invalid request, a job not finished yet, or one without failed users"
                        ),
                    },
                }
            },
            "/messages/{message_id}": {
                "get": {
                    "operationId": "getMessage",
                    "summary": "A message once a delivery report about it was folded, in the "
                    "shape of Courier's Messages API",
                    "parameters": [
                        {
                            "name": "message_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        }
                    ],
                    "responses": {
                        "200": _json({"$ref": REF.format(model="Message")}, "The message"),
                        "404": _error("No such message (or none reported on yet)"),
                        **COMMON,
                    },
                }
            },
            "/bulk/{job_id}/users": {
                "get": {
                    "operationId": "listUsers",
                    "parameters": [
                        JOB_ID,
                        {
                            "name": "cursor",
                            "in": "query",
                            "required": False,
                            "description": "paging.cursor of the previous page (opaque)",
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"},
                        },
                    ],
                    "responses": {
                        "200": _json(users_page, "A page of users in ingestion order"),
                        "404": _error("No such job"),
                        **COMMON,
                    },
                }
            },
            **_webhooks(defs),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": defs,
        },
    }
