"""The counted reliability suite (`make chaos`): faults injected into a real stack.

Every scenario runs a real job on its own topics, with real worker processes,
against the local Kafka and Redis that `make up` started, injects its fault,
then counts: sends expected and seen by a `read_committed` consumer,
duplicates, lost, the job's final counters against the truth, and 5xx
answers. The results go to docs/reliability.md.
"""
