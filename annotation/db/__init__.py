"""The rating store's databases: `schema` (the tables, written once), `engines` (SQLite file |
PostgreSQL, every difference between them), `migrate` (copy a store, verified), `scratch` (a
throw-away PostgreSQL cluster for tests and benchmarks)."""
