"""PostgreSQL: connections (pg8000), connection URIs, pg_dump/pg_restore, the TLS forwarder for them, the embedded server and its builds, server-side fingerprints and catalog introspection."""
