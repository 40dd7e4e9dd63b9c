"""``antenna-elt simulate``: its arguments; the simulator is :mod:`antenna_elt.sim`."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from antenna_elt.cli.argtypes import duration, non_negative, positive_int, share, utc_epoch
from antenna_elt.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.sim.producer import SimulateRequest, simulate

    fields = {f.name for f in dataclasses.fields(SimulateRequest)}
    return simulate(
        SimulateRequest(**{k: v for k, v in vars(args).items() if k in fields}), settings
    )


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="send simulated antenna traffic to Kafka and write its ground-truth ledger",
        description=(
            "Generate contract events for the seeded users (plus unknown devices) over a "
            "simulated clock and produce them to the events topic. Events are spread evenly over "
            "--duration of simulated time starting at --start. --speedup S makes simulated time "
            "run S times faster than real time (1 h in 10 s: --speedup 360); --rate caps "
            "messages per real second; with neither, messages go out as fast as possible. "
            "The same --seed and settings give the same messages and the same ledger."
        ),
    )
    p.add_argument("--topic", help="topic to produce to (default: ANTENNA_ELT_TOPIC or devices)")
    p.add_argument(
        "--start",
        type=utc_epoch,
        help=(
            "simulated time of the first event, ISO 8601 UTC (default: the latest hour "
            "from which the simulated clock never runs ahead of the real one: the current "
            "hour at --speedup 1 or less, the previous one for 1h at --speedup 360; event "
            "times past their sending time are rejected as timestamp_in_future)"
        ),
    )
    p.add_argument(
        "--duration",
        type=duration,
        help="simulated time the events span: 3600s, 90m, 1h (default: 1h, or derived from --count)",
    )
    p.add_argument(
        "--count", type=positive_int, help="messages to send (default: 36000 per simulated hour)"
    )
    p.add_argument(
        "--speedup",
        type=non_negative,
        default=0.0,
        help="simulated seconds per real second; 0 = no pacing (default: 0)",
    )
    p.add_argument(
        "--rate",
        type=non_negative,
        default=0.0,
        help="at most this many messages per real second; 0 = no cap (default: 0)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    p.add_argument(
        "--unknown-devices",
        type=int,
        default=2,
        help="devices not in user metadata, besides the 20 seeded users (default: 2)",
    )
    p.add_argument(
        "--antennas", type=positive_int, default=5, help="number of antennas (default: 5)"
    )
    p.add_argument(
        "--apps",
        default="FACETIME,SKYPE,FACEBOOK,WHATSAPP",
        help="comma-separated app names (default: FACETIME,SKYPE,FACEBOOK,WHATSAPP)",
    )
    p.add_argument(
        "--malformed-share",
        type=share,
        default=0.0,
        help="share of messages that break the contract, every kind in turn (default: 0)",
    )
    p.add_argument(
        "--duplicate-share",
        type=share,
        default=0.0,
        help="share of events re-sent byte for byte a little later (default: 0)",
    )
    p.add_argument(
        "--late-share",
        type=share,
        default=0.0,
        help="share of events with an event time before the simulated clock (default: 0)",
    )
    p.add_argument(
        "--late-max",
        type=duration,
        default=1800,
        help="how late a late event can be (default: 30m)",
    )
    p.add_argument(
        "--window-seconds",
        type=positive_int,
        default=300,
        help="window of the ledger's per-window totals; match dbt's var (default: 300)",
    )
    p.add_argument(
        "--ledger",
        help="where to write the ledger JSON (default: <ANTENNA_ELT_HOME>/ledgers/<topic>-seed<seed>-<start>.json)",
    )
    p.add_argument("--output", help="write the messages to this file (JSON lines) instead of Kafka")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)
