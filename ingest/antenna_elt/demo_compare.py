"""End of `make demo`: the serving marts built by DuckDB over the lake against those built
by PostgreSQL over staging, row for row."""

from __future__ import annotations

import sys

from antenna_elt.dbt import query_duckdb, query_postgres
from antenna_elt.settings import load_settings


def main() -> int:
    settings = load_settings()
    marts = settings.marts_schema
    duckdb_path = settings.duckdb_path
    failed = 0
    for mart in ("bytes", "bytes_hourly", "user_quota_limit"):
        sql = f"select * from {marts}.{mart} order by 1, 2, 3, 4"
        pg = query_postgres(settings.pg_conninfo, sql)
        duck = query_duckdb(duckdb_path, sql)
        same = pg == duck
        failed += not same
        print(
            f"  {'ok  ' if same else 'DIFF'} {mart}: {len(pg)} rows in PostgreSQL, {len(duck)} in DuckDB over the lake"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
