"""The simulator's ground truth for fct_devices_active_recent: the look-back to the second,
unknown devices, and a ledger read back from its file."""

from __future__ import annotations

from pathlib import Path

from antenna_elt.sim import ledger as ledger_module
from antenna_elt.sim.users import User

T0 = 1_795_489_200  # 2026-11-24 03:00:00 UTC
KNOWN = User("d-known", "Known", "known@example.com", 1_000)


def test_the_recent_activity_is_the_ten_minutes_before_the_newest_event(tmp_path: Path) -> None:
    ledger = ledger_module.Ledger()
    ledger.add_event(T0 + 899, "d-unknown", "a1", 7, "SKYPE")  # the newest: 03:14:59
    ledger.add_event(T0 + 299, "d-old", "a1", 1_000, "SKYPE")  # exactly 600 s before: out
    ledger.add_event(T0 + 250, "d-known", "a1", 100, "SKYPE")
    ledger.add_event(T0 + 300, "d-known", "a2", 5, "WHATSAPP")  # 599 s before: in
    ledger.add_event(T0 + 899, "d-known", "a2", 3, "WHATSAPP")  # late, the same second
    ledger.finish([KNOWN])
    expected = {
        "as_of": "2026-11-24T03:14:59Z",
        "active_minutes": 10,
        "devices_active": 2,
        "unknown_devices_active": 1,
        "bytes_total": 15,
    }
    assert ledger.recent == expected
    ledger.write(tmp_path / "ledger.json")
    again = ledger_module.load(tmp_path / "ledger.json")
    assert again.recent == expected
    # what is kept is enough to finish a merge again (tests merge two simulators' ledgers)
    assert again.seconds == {T0 + 300: 5, T0 + 899: 10}
    assert again.last_seen == {"d-unknown": T0 + 899, "d-old": T0 + 299, "d-known": T0 + 899}
    again.finish([KNOWN])
    assert again.recent == expected


def test_a_ledger_without_events_has_no_recent_activity() -> None:
    ledger = ledger_module.Ledger()
    ledger.finish([KNOWN])
    assert ledger.recent is None
