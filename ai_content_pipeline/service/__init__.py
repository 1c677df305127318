"""``aicp serve`` / ``aicp worker``: the generation service over HTTP.

- :mod:`.app`: the FastAPI application (jobs, events, files, catalog, health, metrics).
- :mod:`.requests`: the request body and how it becomes a validated chain.
- :mod:`.store`: jobs, events, records and workers in the database.
- :mod:`.db`: tables, engines (SQLite, PostgreSQL), Alembic migrations.
- :mod:`.worker`: claims jobs and runs them through the chain runner.
- :mod:`.metrics`: the Prometheus collector.

No stage knows HTTP: a job is a chain, run by the same runner as ``aicp run-chain``.
"""
