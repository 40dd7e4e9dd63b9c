"""The Parquet lake sink: storage, layout, Parquet format, commit log, hour closer."""
