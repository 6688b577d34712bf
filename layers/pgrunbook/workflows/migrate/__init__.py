"""Schema migrations: timestamped files with up, down and verify parts, linted, applied one
transaction each with lock and statement timeouts, recorded in ``pgrunbook.schema_migrations``."""
