"""The benchmark suite (issue #5): `python -m bench` (or `make bench`) runs it.

Every scenario runs against the local stack (Kafka and Redis) with real
worker processes, in its own topics, app id and Redis prefix, and reports
its figure as a ratio against a baseline measured in the same run on the same
broker: the machines are small and shared, so only ratios compare across runs.
The results are written to `docs/benchmarks.md` (the whole file, every run).
"""
