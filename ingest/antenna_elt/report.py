"""``antenna-elt report``: print what the marts say about an hour, and check them against a
simulator ledger when one is given (the end of ``make demo``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg import sql

from antenna_elt.errors import UserError
from antenna_elt.identifiers import check_identifier
from antenna_elt.settings import Settings


def _query(
    settings: Settings, query: str, marts: str, *tables: str, params: tuple[Any, ...] = ()
) -> list[tuple[Any, ...]]:
    """Run ``query`` with its ``{}`` placeholders filled by the marts ``tables`` of schema
    ``marts``, each quoted as an identifier."""
    import psycopg

    composed = sql.SQL(query).format(*(sql.Identifier(marts, table) for table in tables))
    try:
        with psycopg.connect(settings.pg_conninfo, connect_timeout=5) as conn:
            return [tuple(r) for r in conn.execute(composed, params).fetchall()]
    except psycopg.errors.UndefinedTable:
        raise UserError(
            "the marts do not exist yet: run `dbt build` (or `make demo`) first"
        ) from None
    except psycopg.OperationalError as exc:
        raise UserError(
            f"cannot reach PostgreSQL ({settings.pg_conninfo}): start it with `make up` ({exc})"
        ) from None


def _table(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(_fmt(c) for c in r) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title]
    for n, row in enumerate(cells):
        lines.append(
            "  "
            + "  ".join(
                c.rjust(w) if n and _numeric(c) else c.ljust(w)
                for c, w in zip(row, widths, strict=True)
            )
        )
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    if not rows:
        lines.append("  (none)")
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "").isdigit()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def run(settings: Settings, hour: datetime | None, top: int, ledger: str | None) -> int:
    """Print an hour's top antennas and apps, its breaches and the last windows; with a
    ledger, check the marts against it (1 on a difference)."""
    marts = check_identifier(settings.marts_schema, "marts schema", "analytics_marts")
    hour_rows = _query(settings, "select max(timestamp) from {}", marts, "bytes_hourly")
    chosen = hour
    hour = chosen or (hour_rows[0][0] if hour_rows and hour_rows[0][0] else None)
    if ledger and not chosen:  # the simulated hour
        from antenna_elt.sim.ledger import load, parse_iso

        start = parse_iso(load(Path(ledger)).settings["start"])
        hour = start.replace(minute=0, second=0, tzinfo=None)
    if hour is None:
        raise UserError("bytes_hourly is empty: simulate and ingest some traffic, then `dbt build`")
    print(f"Hour {hour:%Y-%m-%d %H:00} UTC (marts in schema {marts})\n")
    for title, kind in (("Top antennas", "antenna_bytes_total"), ("Top apps", "app_bytes_total")):
        rows = _query(
            settings,
            "select id, value from {} where timestamp = %s and type = %s order by value desc, id limit %s",
            marts,
            "bytes_hourly",
            params=(hour, kind, top),
        )
        print(_table(f"{title} by bytes", ("id", "bytes"), rows) + "\n")
    breaches = _query(
        settings,
        "select email, usage_bytes, quota_bytes, overage_bytes, usage_ratio from {} "
        "where hour_start = %s order by usage_ratio desc, email",
        marts,
        "fct_quota_breaches",
        params=(hour,),
    )
    print(
        _table(
            "Quota breaches (usage > quota)",
            ("email", "usage", "quota", "overage", "ratio"),
            breaches,
        )
        + "\n"
    )
    activity = _query(
        settings,
        "select window_start, devices_connected, devices_connecting, devices_disconnecting, heavy_users_connected, "
        "bytes_per_second from {} order by window_start desc limit 3",
        marts,
        "fct_network_activity_windowed",
    )
    print(
        _table(
            "Network, last windows",
            ("window", "connected", "connecting", "disconnecting", "heavy users", "bytes/s"),
            activity,
        )
    )
    if ledger:
        return _check_against_ledger(settings, marts, Path(ledger))
    return 0


def _check_against_ledger(settings: Settings, marts: str, path: Path) -> int:
    from antenna_elt.sim import ledger as ledger_module
    from antenna_elt.sim.users import load_users

    ledger = ledger_module.load(path)
    emails = {u.id: u.email for u in load_users()}

    def naive(moment: datetime) -> datetime:
        return moment.astimezone(UTC).replace(tzinfo=None)

    def served(mart: str, kind: str) -> dict[tuple[datetime, str], int]:
        rows = _query(
            settings,
            "select timestamp, id, value from {} where type = %s",
            marts,
            mart,
            params=(kind,),
        )
        return {(t, i): v for t, i, v in rows}

    hours = {naive(h) for (h, _k) in ledger.bytes_by("hour", "antenna")}
    checks = {
        "bytes (per window, by antenna)": (
            {
                k: v
                for k, v in served("bytes", "antenna_bytes_total").items()
                if k[0].replace(minute=0) in hours
            },
            {(naive(t), k): v for (t, k), v in ledger.bytes_by("window", "antenna").items()},
        ),
        "bytes_hourly (by email)": (
            {k: v for k, v in served("bytes_hourly", "mail_bytes_total").items() if k[0] in hours},
            {
                (naive(t), emails[k]): v
                for (t, k), v in ledger.bytes_by("hour", "user").items()
                if k in emails
            },
        ),
        "user_quota_limit": (
            {
                (e, t, u, q)
                for e, u, q, t in _query(
                    settings,
                    "select email, usage, quota, timestamp from {}",
                    marts,
                    "user_quota_limit",
                )
                if t in hours
            },
            {(e, naive(h), u, q) for e, h, u, q in ledger.breaches()},
        ),
    }
    print(f"\nChecked against the simulator's ledger ({path.name}):")
    failed = 0
    for name, (actual, expected) in checks.items():
        ok = actual == expected
        failed += not ok
        print(
            f"  {'ok  ' if ok else 'DIFF'} {name}: {len(expected)} expected rows, {len(actual)} in the mart"
        )
    return 1 if failed else 0
