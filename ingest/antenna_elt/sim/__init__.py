"""The traffic simulator: users, deterministic generator, ground-truth ledger, producer."""
