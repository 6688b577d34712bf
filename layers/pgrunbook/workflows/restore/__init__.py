"""The restore workflow: a restore test or DR drill on a throwaway RDS target (phases.py)."""
