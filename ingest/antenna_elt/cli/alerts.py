"""``antenna-elt notify`` and ``antenna-elt feedback``: their arguments; the alerts are
:mod:`antenna_elt.alerts.quota`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from antenna_elt.cli.argtypes import sql_name
from antenna_elt.settings import Settings


def run_notify(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.alerts.quota import notify_once

    marts = args.marts_schema or settings.marts_schema
    log_schema = args.log_schema or settings.alert_log_schema
    topic = args.topic or settings.alerts_topic
    while True:
        new, sent = notify_once(settings, marts, log_schema, topic)
        print(f"{new} new breaches recorded, {sent} alerts sent to {topic}", flush=True)
        if not args.watch:
            return 0
        time.sleep(args.interval)


def run_feedback(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.alerts.quota import record_feedback

    log_schema = args.log_schema or settings.alert_log_schema
    email, hour = record_feedback(settings, args.alert_id, log_schema, args.ack, args.text)
    print(f"feedback recorded for {email}, hour {hour:%Y-%m-%d %H:00}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "notify",
        help="send one alert per user-hour over quota to Kafka quota-alerts and log it",
        description=(
            "Read the breach mart (<ANTENNA_ELT_DBT_SCHEMA>_marts.fct_quota_breaches), record every "
            "breach in the alert log and publish each one exactly once to the alerts topic "
            "(key = user id). Safe to run repeatedly, concurrently, and after a crash."
        ),
    )
    p.add_argument(
        "--topic", help="alerts topic (default: ANTENNA_ELT_ALERTS_TOPIC or quota-alerts)"
    )
    p.add_argument(
        "--marts-schema",
        type=sql_name("analytics_marts"),
        help="schema of the marts (default: <ANTENNA_ELT_DBT_SCHEMA or analytics>_marts)",
    )
    p.add_argument(
        "--log-schema",
        type=sql_name("alerts"),
        help="schema of the alert log (default: ANTENNA_ELT_ALERT_LOG_SCHEMA or alerts)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="keep running: check for new breaches every --interval seconds",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=10.0,
        help="seconds between checks with --watch (default: 10)",
    )
    p.set_defaults(func=run_notify)

    f = subparsers.add_parser(
        "feedback",
        help="record a user's acknowledgement or feedback on an alert",
        description="Set acknowledged_at and/or feedback_text of one alert in the alert log.",
    )
    f.add_argument("alert_id", help="the alert id (from the alert message or the log)")
    f.add_argument("--ack", action="store_true", help="mark the alert acknowledged (now)")
    f.add_argument("--text", help="feedback text to record")
    f.add_argument(
        "--log-schema",
        type=sql_name("alerts"),
        help="schema of the alert log (default: ANTENNA_ELT_ALERT_LOG_SCHEMA or alerts)",
    )
    f.set_defaults(func=run_feedback)
