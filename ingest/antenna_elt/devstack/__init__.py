"""Developer tooling, not the product: the local Kafka broker and PostgreSQL server, the
Superset deployer, and the one service life cycle they share. Only the CLI imports it
(an import-linter contract keeps it so)."""
