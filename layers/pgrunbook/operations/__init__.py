"""Operations: one module per runbook operation, the registry that declares them, and the runner every entry point calls."""
