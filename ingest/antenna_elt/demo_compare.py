"""End of `make demo`: the serving marts built by DuckDB over the lake against those built
by PostgreSQL over staging, row for row."""

from __future__ import annotations

import os
import sys

from antenna_elt.config import PROJECT_ROOT, load_settings
from antenna_elt.dbt_runner import query_duckdb, query_postgres


def main() -> int:
    settings = load_settings()
    marts = f"{os.environ.get('ANTENNA_ELT_DBT_SCHEMA', 'analytics')}_marts"
    duckdb_path = os.environ.get(
        "ANTENNA_ELT_DUCKDB_PATH", str(PROJECT_ROOT / ".stack" / "warehouse.duckdb")
    )
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
