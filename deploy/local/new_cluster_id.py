"""Prints a new Kafka cluster id for `kafka-storage format -t`.

16 random bytes, base64url without padding, and, like Kafka's own
`Uuid.randomUuid()`, never one that starts with "-": the storage tool's
argument parser would take that id for an option and refuse to format.
"""

import base64
import os


def new_cluster_id() -> str:
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


if __name__ == "__main__":
    print(new_cluster_id())
