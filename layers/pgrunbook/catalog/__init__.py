"""The catalog: what exists, in S3 (backups by their manifests, reports, leases) and its mirror table in the database."""
