"""pgrunbook: PostgreSQL operations runbooks turned into software that runs by itself.

The library is organised as a pure domain core (tiers, manifest, integrity scoring,
fingerprint SQL) and adapters at the edge (``pg`` for pg8000, ``pgtools`` for the
pg_dump/pg_restore binaries, ``storage`` for S3).  Jobs (``backup``, ``restore``) wire
the two; the CLI and the Lambda handlers are thin layers over the jobs.
"""

__version__ = "0.1.0"
