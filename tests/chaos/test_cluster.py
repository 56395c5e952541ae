"""Where Kafka puts a key, a transactional id and a group: the pure helpers that
`make chaos-cluster` uses to pick the broker to kill. Expected values are the
Java client's own (`Utils.murmur2`, `String.hashCode`, `Utils.abs`), computed
with the kafka-clients 4.1.1 jar."""

from __future__ import annotations

import pytest

from chaos.cluster import coordinator_partition, java_hash_code, key_partition, murmur2

# text -> (Utils.murmur2 of its UTF-8 bytes, toPositive(murmur2) % 8, String.hashCode, abs % 50)
JAVA = {
    "21": (-973932308, 4, 1599, 49),
    "foobar": (-790332482, 6, -1268878963, 13),
    "a-little-bit-long-string": (-985981536, 0, -865776169, 19),
    "a-little-bit-longer-string": (-1486304829, 3, -1512594870, 20),
    "abc": (479470107, 3, 96354, 4),
    "": (275646681, 1, 0, 0),
    "1-6928a0c1-abcdef": (699023177, 1, 47494734, 34),
    "bulkstream-fanout-w1": (1832568471, 7, 955419985, 35),
    # hashCode is Integer.MIN_VALUE, whose Utils.abs is 0
    "polygenelubricants": (342343466, 2, -(2**31), 0),
    "é-ünï": (-386425049, 7, 216766809, 9),
    "😀x": (-1018136956, 4, 54959989, 39),  # a surrogate pair in UTF-16
}


@pytest.mark.parametrize(("text", "expected"), JAVA.items())
def test_the_java_clients_partitions_and_coordinators(
    text: str, expected: tuple[int, int, int, int]
) -> None:
    hashed, partition, hash_code, coordinator = expected
    assert murmur2(text.encode()) == hashed
    assert key_partition(text.encode(), 8) == partition
    assert java_hash_code(text) == hash_code
    assert coordinator_partition(text, 50) == coordinator
