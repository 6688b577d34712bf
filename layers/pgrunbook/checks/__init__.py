"""Checks of a database: SQL data-quality checks, the built-in checks of a live database, performance checks, and the checks of a recovered one."""
