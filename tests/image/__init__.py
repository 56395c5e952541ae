"""`make image-test`: the container image, built and run for real.

Two worker containers and one API container from the image run against the
local Kafka and Redis; Courier's Python SDK drives a job through them, then a
job of 100,000 users goes in over HTTP and one worker container is SIGKILLed
in the middle of its fan-out and started again. Every send is counted on the
sends topic (read_committed): each user exactly once. Not collected by pytest
(no test_*.py here): `python -m tests.image`, through the Makefile.
"""
