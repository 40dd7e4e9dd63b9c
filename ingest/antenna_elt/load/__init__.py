"""Warehouse loaders of the lake's closed hours (BigQuery)."""
