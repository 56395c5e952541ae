"""schemathesis against /openapi.json: no 5xx, no answer that breaks the schema, valid input
accepted and invalid input refused, on a real job of the caller and on guessed ids."""

from __future__ import annotations

from streams.testing.fuzz import fuzz, not_http
from streams.testing.processes import ApiProcess

# Per operation, mode (valid, invalid) and target (real job, guessed id): 38 kinds of case
# with room for 40 each, and two with room for 1: a real job's GET, whose only input is
# the id, and GET /webhooks, which has none (so no invalid case either).
EXAMPLES = 40


def test_api_conforms_to_its_openapi(api: ApiProcess) -> None:
    fuzzed = fuzz(api, EXAMPLES)
    print(f"\nschemathesis cases: {dict(fuzzed.cases)}\nanswers: {dict(fuzzed.answers)}")
    print(f"not HTTP, refused by the server's parser: {fuzzed.not_http}")
    assert fuzzed.total >= 500
    assert len(fuzzed.cases) == 40, sorted(fuzzed.cases)
    # The real job was reached, and run exactly once however many runs were asked for
    # (dry runs, which leave it CREATED, aside).
    assert fuzzed.answers[200], fuzzed.answers
    real_runs = [mode for mode, body in fuzzed.runs if not (body or {}).get("dryRun")]
    assert real_runs == ["positive"], fuzzed.runs


def test_a_header_rfc_9110_forbids_makes_the_message_not_http() -> None:
    assert not not_http(None)
    assert not not_http({"Idempotency-Key": "k\tv é\xff", "rU0.9p!": "(u?F", "X": ""})
    for value in ("a\x00b", "a\x08", "\x1fa", "a\x7f", "a\rb"):
        assert not_http({"X-Odd": value}), repr(value)
    for name in ("X Odd", "X(Odd)", "", "é", "X-Odd\n"):
        assert not_http({name: "v"}), repr(name)
    assert not not_http({"Content-Length": "0"})
    for length in ("", " 1", "x", "-1", "1, 1"):
        assert not_http({"content-length": length}), repr(length)
    assert not_http({"Content-Length": "3", "Transfer-Encoding": "chunked"})
