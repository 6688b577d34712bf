"""Adapters: where pgrunbook meets the world (PostgreSQL and its tools, S3, AWS services). Nothing here decides anything; it translates and names failures by cause."""
