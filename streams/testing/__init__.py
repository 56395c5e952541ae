"""The testing harness: one way to run and read a stack, for the tests, the benchmark
(`bench/`), the reliability suite (`chaos/`), the image test and `bulkstream demo`.

- `processes`: real `bulkstream worker` and `bulkstream api` processes (start,
  stop, kill, log tail, metrics URL), waiting until they are ready, /proc figures;
- `users`: generated users and the ingest commands that carry them;
- `reader`: a synchronous reader of the Redis views and command results;
- `client`: an upstream producer (commands out, results and views in);
- `topics`: reading topics back, the DLQ, namespaces of one's own;
- `fuzz`: schemathesis against a live API (needs the dev extra).

Layering (pyproject's import contract): `streams.testing` sits directly below
`streams.ops`, above everything else. The demo (`streams.ops.demo`) imports
it; it never imports `streams.ops`: it runs the CLI as a subprocess
(`python -m streams.ops.cli`), a command line, not an import. Nothing here
imports faust. Nothing anywhere imports from `tests/`.
"""
