"""Argument types for the CLI: a bad value becomes argparse's one-line error."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime

from antenna_elt.identifiers import is_plain_identifier, refusal


def _number(convert: Callable[[str], float], noun: str, text: str) -> float:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None


def positive_int(text: str) -> int:
    value = int(_number(int, "an integer", text))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def non_negative_int(text: str) -> int:
    value = int(_number(int, "an integer", text))
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


def positive_float(text: str) -> float:
    value = _number(float, "a number", text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def non_negative(text: str) -> float:
    value = _number(float, "a number", text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


def share(text: str) -> float:
    value = _number(float, "a number between 0 and 1", text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def port_number(text: str) -> int:
    value = int(_number(int, "a port number", text))
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1-65535)")
    return value


def sql_name(example: str) -> Callable[[str], str]:
    """A schema (role, database) name that goes into SQL: a plain lower-case identifier,
    so that no flag can carry SQL of its own (``example`` is shown in the error)."""

    def check(text: str) -> str:
        if not is_plain_identifier(text):
            raise argparse.ArgumentTypeError(f"{text!r} {refusal(example)}")
        return text

    check.__name__ = "SQL name"  # what argparse calls the type in its messages
    return check


_DURATION = re.compile(r"^(\d+)([smh]?)$")


def duration(text: str) -> int:
    """``90m``, ``1h``, ``3600s`` or ``3600`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600s, 90m or 1h")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def utc_epoch(text: str) -> int:
    """An ISO 8601 time (UTC unless it says otherwise) -> epoch seconds."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time like 2026-11-24T10:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())
