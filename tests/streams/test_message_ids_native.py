"""The positions delivery reports' message ids carry, read natively
(`bulkstream_native.carried_positions`, native/src/message_ids.rs): the same answer as
`streams.ids.carried_positions` for every id, its own, another job's, made up."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.ids import (
    carried_positions,
    message_digest,
    position_reader,
    positional_message_id,
)
from tests.streams.native import require_native

native = position_reader(native=True)
require_native(native is not carried_positions)

JOB = "1-6b0f2fd2-7864a974a505dfc9fa1e7de2"
OWN = positional_message_id(1_764_000_000.5, JOB, 1234)


def test_its_own_ids_give_their_positions_and_any_other_minus_one() -> None:
    positions = [0, 1, 9, 10, 1234, 2**40 - 1]
    ids = [positional_message_id(1.0, JOB, p) for p in positions]
    assert native([JOB] * len(ids), ids) == positions
    others = [
        "1-00000001-" + message_digest(JOB, "user:u1"),  # an `identity` id
        positional_message_id(1.0, "another job", 7),
        OWN[:-24] + "f" * 14 + OWN[-10:],  # a made-up digest
        OWN[:-24] + OWN[-24:].upper(),  # not as it was written
        OWN[:-24] + OWN[-24:-10].upper() + OWN[-10:],  # its digest alone not as written
        OWN[:-2] + "_4",
        OWN[-23:],
        OWN[:-1] + "\u0664",  # a digit Python's int() reads
        "",
        "x" * 24,
    ]
    assert native([JOB] * len(others), others) == [-1] * len(others)
    assert carried_positions([JOB] * len(others), others) == [-1] * len(others)


HEXISH = st.text(alphabet="0123456789abcdefABCDEF_ -\u0664x", min_size=0, max_size=30)


@settings(max_examples=500, deadline=None)
@given(
    jobs=st.lists(st.sampled_from([JOB, "job", "", "j\u00e9b\x00"]), min_size=1, max_size=6),
    positions=st.lists(st.integers(0, 2**40 - 1), min_size=6, max_size=6),
    noise=st.lists(HEXISH, min_size=6, max_size=6),
    which=st.lists(st.integers(0, 3), min_size=6, max_size=6),
)
def test_the_native_answer_is_the_python_one(
    jobs: list[str], positions: list[int], noise: list[str], which: list[int]
) -> None:
    ids = []
    for n, job in enumerate(jobs):
        own = positional_message_id(1.0, job, positions[n])
        ids.append(
            [
                own,
                own[: -len(noise[n])] + noise[n] if noise[n] else own,
                noise[n],
                "1-00000001-" + noise[n],
            ][which[n]]
        )
    assert native(jobs, ids) == carried_positions(jobs, ids)
