"""The domain: pure rules and records (ids, tiers, manifests, integrity, thresholds, retention policy, results, errors, notices). Standard library only; a test holds it to that."""
