"""Table recovery: the runbook's "Data Corruption Response" for chosen tables (phases.py)."""
