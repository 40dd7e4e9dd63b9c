"""The simulator's ground truth: what it sent, aggregated the way the marts aggregate.

Tests and the demo compare marts with it. It holds aggregates only (no per-event list), so
its memory does not grow with the number of events.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from antenna_elt.sim.users import User

ACTIVE_MINUTES = 10
"""The look-back of fct_devices_active_recent (dbt var active_minutes: its default)."""
GRAINS = ("window", "hour")
DIMENSIONS = ("antenna", "user", "app")


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass
class Ledger:
    window_seconds: int = 300
    settings: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "messages_sent": 0,
            "events": 0,
            "duplicates": 0,
            "late": 0,
            "malformed": 0,
            "misspelt_timestamp": 0,
        }
    )
    malformed_by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    total_bytes: int = 0
    # (grain, dimension, window start epoch, key) -> [bytes, events]
    totals: dict[tuple[str, str, int, str], list[int]] = field(default_factory=dict)
    unknown_devices: set[str] = field(default_factory=set)
    quota_breaches: list[dict[str, Any]] = field(default_factory=list)
    last_seen: dict[str, int] = field(default_factory=dict)
    """Each device's last event, epoch seconds."""
    seconds: dict[int, int] = field(default_factory=dict)
    """Bytes per second: every second while sending, those of the look-back once finished
    (enough to merge ledgers: a second in the merged look-back is in its own ledger's)."""
    recent: dict[str, Any] | None = None
    """fct_devices_active_recent as it must be (finish): as_of, devices and bytes of the
    ACTIVE_MINUTES before the newest event; None without events."""

    def add_event(self, timestamp: int, device: str, antenna: str, nbytes: int, app: str) -> None:
        """Count one distinct valid event (duplicates and malformed messages are not)."""
        self.counters["events"] += 1
        self.total_bytes += nbytes
        if timestamp > self.last_seen.get(device, -1):
            self.last_seen[device] = timestamp
        self.seconds[timestamp] = self.seconds.get(timestamp, 0) + nbytes
        window = timestamp - timestamp % self.window_seconds
        hour = timestamp - timestamp % 3600
        totals = self.totals
        for grain, start in (("window", window), ("hour", hour)):
            for dimension, key in (("antenna", antenna), ("user", device), ("app", app)):
                slot = totals.get((grain, dimension, start, key))
                if slot is None:
                    totals[(grain, dimension, start, key)] = [nbytes, 1]
                else:
                    slot[0] += nbytes
                    slot[1] += 1

    def finish(self, users: list[User]) -> None:
        """Derive the user-hours over quota, the unknown devices and the recent activity."""
        by_id = {u.id: u for u in users}
        self.recent = None
        if self.last_seen:
            as_of = max(self.last_seen.values())
            after = as_of - ACTIVE_MINUTES * 60
            self.seconds = {t: n for t, n in self.seconds.items() if t > after}
            active = [d for d, t in self.last_seen.items() if t > after]
            self.recent = {
                "as_of": iso(as_of),
                "active_minutes": ACTIVE_MINUTES,
                "devices_active": len(active),
                "unknown_devices_active": sum(1 for d in active if d not in by_id),
                "bytes_total": sum(self.seconds.values()),
            }
        self.quota_breaches = []
        self.unknown_devices = set()
        for (grain, dimension, start, key), (nbytes, _) in sorted(self.totals.items()):
            if grain != "hour" or dimension != "user":
                continue
            user = by_id.get(key)
            if user is None:
                self.unknown_devices.add(key)
            elif nbytes > user.quota:
                self.quota_breaches.append(
                    {
                        "id": user.id,
                        "email": user.email,
                        "hour": iso(start),
                        "usage": nbytes,
                        "quota": user.quota,
                    }
                )

    # -- reading -----------------------------------------------------------------------

    def bytes_by(self, grain: str, dimension: str) -> dict[tuple[datetime, str], int]:
        """``{(window start, key): bytes}`` for one grain and dimension."""
        return {
            (datetime.fromtimestamp(start, UTC), key): value[0]
            for (g, d, start, key), value in self.totals.items()
            if g == grain and d == dimension
        }

    def breaches(self) -> set[tuple[str, datetime, int, int]]:
        """``{(email, hour, usage, quota)}`` of every user-hour strictly over quota."""
        return {
            (b["email"], parse_iso(b["hour"]), b["usage"], b["quota"]) for b in self.quota_breaches
        }

    # -- files -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "window_seconds": self.window_seconds,
            "counters": dict(self.counters),
            "malformed_by_kind": dict(sorted(self.malformed_by_kind.items())),
            "total_bytes": self.total_bytes,
            "rows": [
                {
                    "grain": grain,
                    "dimension": dimension,
                    "window_start": iso(start),
                    "key": key,
                    "bytes": value[0],
                    "events": value[1],
                }
                for (grain, dimension, start, key), value in sorted(self.totals.items())
            ],
            "quota_breaches": self.quota_breaches,
            "unknown_devices": sorted(self.unknown_devices),
            "recent": self.recent,
            "last_seen": dict(sorted(self.last_seen.items())),
            "recent_seconds": {str(t): n for t, n in sorted(self.seconds.items())},
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)


def load(path: Path) -> Ledger:
    data = json.loads(Path(path).read_text())
    ledger = Ledger(window_seconds=data["window_seconds"], settings=data["settings"])
    ledger.counters = data["counters"]
    ledger.malformed_by_kind = defaultdict(int, data["malformed_by_kind"])
    ledger.total_bytes = data["total_bytes"]
    ledger.totals = {
        (r["grain"], r["dimension"], int(parse_iso(r["window_start"]).timestamp()), r["key"]): [
            r["bytes"],
            r["events"],
        ]
        for r in data["rows"]
    }
    ledger.quota_breaches = data["quota_breaches"]
    ledger.unknown_devices = set(data["unknown_devices"])
    ledger.recent = data.get("recent")
    ledger.last_seen = dict(data.get("last_seen", {}))
    ledger.seconds = {int(t): n for t, n in data.get("recent_seconds", {}).items()}
    return ledger
