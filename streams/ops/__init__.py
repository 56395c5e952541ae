"""Operator tools: the worker process, the CLI, the demo, live status, logs, health."""
